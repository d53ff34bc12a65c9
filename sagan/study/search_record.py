"""A search's record in the repository (spec key `record: docs/studies/records/NAME/`): what its rungs measured,
the configurations it drew, the scorer, and its final study's record, kept where a later session's checkout finds
them, so a search longer than one sitting goes on where the last one stopped.

    RECORD/spec.json          the search spec and its identity (a record of another spec is refused)
    RECORD/configs.json       the drawn configurations: a later checkout runs these, never a new draw
    RECORD/costs.json         with `equal: time`: each configuration's measured seconds per step, which set its
                              step budgets (sagan.study.cost); a later checkout keeps these budgets
    RECORD/rungs/cNN.json     a configuration's scores at the end of each rung it reached (its search_run.json)
    RECORD/scorer/            the classifier that scored the rungs (`features: classifier` only)
    RECORD/final/             the final study's record (sagan.study.record); its scorer is a copy of the one above,
                              so the finalists and the base are scored by the weights that ranked the rungs
    RECORD/study.md           the search's tables as of the last session

A promoted configuration whose run folder is gone (a fresh checkout) starts again from its seed and trains
straight to the new rung's budget: the same run as continuing its checkpoint would give (resume is bitwise exact,
tests/study/test_search.py), at the cost of the steps trained before.
"""

from __future__ import annotations

from pathlib import Path

from sagan.errors import ConfigError
from sagan.study.files import read_json
from sagan.study.record import COSTS, SCORER, KeptScorer, _write
from sagan.study.search_spec import SearchSpec, final_record

RUNGS = "rungs"
CONFIGS = "configs.json"


def merge_runs(local: dict | None, kept: dict | None) -> dict | None:
    """One configuration's rung entries from its run folder and from the record, each rung once (the record's
    where both hold it: they are the same run's)."""
    if local is None or kept is None:
        return local or kept
    rungs = {e["rung"]: e for e in local.get("rungs", [])}
    rungs.update({e["rung"]: e for e in kept.get("rungs", [])})
    return {**local, "rungs": [rungs[r] for r in sorted(rungs)]}


class SearchRecord(KeptScorer):
    """The record folder of one search spec."""

    parts = (RUNGS, SCORER, "final", CONFIGS, COSTS, "study.md")

    def marker(self) -> dict:
        return {**super().marker(), "kind": "search"}

    def run_path(self, cid: str) -> Path:
        return self.folder / RUNGS / f"{cid}.json"

    def run(self, cid: str) -> dict | None:
        """The recorded rungs of one configuration, or None."""
        return read_json(self.run_path(cid))

    def shas(self) -> set[str]:
        found = [read_json(p) or {} for p in sorted((self.folder / RUNGS).glob("*.json"))]
        return {e["provenance"]["extractor_weights_sha256"] for run in found for e in run.get("rungs", [])
                if e.get("provenance", {}).get("extractor_weights_sha256")}

    def configs(self) -> list[dict] | None:
        return (read_json(self.folder / CONFIGS) or {}).get("configs")

    def keep_configs(self, configs: list[dict]) -> None:
        _write(self.folder / CONFIGS, {"configs": configs})

    def save_run(self, run: dict) -> None:
        """Keep a configuration's rung entries, after checking that every score came from the record's scorer
        (and keeping that scorer the first time)."""
        for entry in run.get("rungs", []):
            self.keep_scorer(entry.get("provenance", {}))
        _write(self.run_path(run["id"]), run)

    def seed_final_scorer(self) -> None:
        """Give the final study's record the classifier that scored the rungs, before its first run is scored."""
        kept = self.scorer_file()
        final = Path(final_record(str(self.folder))) / SCORER
        if kept is not None and not list(final.glob("classifier-*.safetensors")):
            KeptScorer(self.spec, final.parent).keep_scorer_files(kept)


def search_record(spec: SearchSpec) -> SearchRecord | None:
    """The search spec's record folder, or None when it names none."""
    return SearchRecord(spec, spec.record) if spec.record else None


def choose_configs(store: SearchRecord | None, stored: list[dict] | None, drawn: list[dict]) -> list[dict]:
    """The configurations a search runs: the record's, else the search folder's, else this draw (a newer Optuna
    could draw others, so a draw is written once and read ever after). A record and a search folder that hold
    different draws are refused: their runs would not be the same configurations."""
    kept = store.configs() if store is not None else None
    if kept is not None and stored is not None and kept != stored:
        raise ConfigError(f"the record {store.folder} and the search folder hold different configurations for this "
                          "spec (drawn by different Optuna versions?); use another --out, or --fresh to start over")
    return kept or stored or drawn
