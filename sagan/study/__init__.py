"""`sagan study`: test claims at equal budget over seeds, as ordinary runs; results are data (study.json), and
study.md and study.html are views of it."""

from __future__ import annotations

from pathlib import Path

from sagan.study.compare import summarise
from sagan.study.files import write_json
from sagan.study.page import write_page
from sagan.study.runner import collect_records, kept_costs, run_study
from sagan.study.spec import StudySpec, load_spec, parse_spec
from sagan.study.table import study_markdown


def write_outputs(spec: StudySpec, out: str | Path, html: bool = True) -> dict:
    """Gather every run record of the study folder (and of its record folder) into study.json, and write study.md
    (also into the record folder) and study.html."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)  # --tables-only in a fresh checkout: the runs are in the record only
    records = collect_records(spec, out)
    study = {"spec": spec.to_dict(), "identity": spec.identity(), "runs": records,
             "summary": summarise(spec, records),
             **({"costs": kept_costs(spec, out)} if spec.equal_time else {})}  # what set each arm's steps
    write_json(out / "study.json", study)
    (out / "study.md").write_text(study_markdown(study))
    if spec.record and Path(spec.record).is_dir():  # the tables travel with the record, into the next checkout
        (Path(spec.record) / "study.md").write_text(study_markdown(study))
    if html:
        write_page(study, out, out / "study.html")
    return study


__all__ = ["StudySpec", "load_spec", "parse_spec", "run_study", "write_outputs", "summarise", "study_markdown"]
