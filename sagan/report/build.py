"""`build_report`: the run report page, from a run folder's records, sample grids, checkpoints and config."""

from __future__ import annotations

from pathlib import Path

from sagan.errors import SaganError
from sagan.report.html import html_page
from sagan.report.sections import (
    _alarms_section,
    _attention_section,
    _class_names,
    _config_section,
    _curves_section,
    _evaluation_section,
    _explorer_link,
    _samples_section,
    _summary,
)
from sagan.stats import read_metrics


def _last_per_step(records) -> list[dict]:
    """Records in step order, the last one written for a step winning (a resumed run logs some steps twice)."""
    by_step = {r["step"]: r for r in records if isinstance(r.get("step"), int)}
    return [by_step[s] for s in sorted(by_step)]


def build_report(run: str | Path, out: str | Path | None = None, attention: bool = True, max_grids: int = 8,
                 seed: int = 0, grid: int = 3) -> Path:
    """Write RUN/report.html (or `out`): one self-contained page; returns its path.

    attention: compute attention maps from the newest checkpoint (a few seconds on a CPU); max_grids: how
    many sample grids from over training to show; seed and grid: the generated images and query points of
    the attention figure.
    """

    run = Path(run)
    if not run.is_dir():
        raise SaganError(f"no such run folder: {run}")
    if not any((run / n).exists() for n in ("metrics.jsonl", "config.yaml", "checkpoints", "samples")):
        raise SaganError(f"{run} is not a run folder (no metrics.jsonl, config.yaml, checkpoints/ or samples/); "
                         "give the --out folder of `sagan train`")
    records = read_metrics(run)
    train = _last_per_step(r for r in records if r.get("kind", "train") == "train")
    evals = _last_per_step(r for r in records if r.get("kind") == "eval")
    alarms = [r for r in records if r.get("kind") == "alarm"]
    config_html, config = _config_section(run)
    class_names = _class_names(run, config)
    explorer = (Path(out) if out else run / "report.html").parent / "explore.html"
    sections = [
        ("summary", "Summary", _summary(run, train, config, class_names) + _alarms_section(alarms)),
        ("samples", "Samples over training", _samples_section(run, max_grids, class_names)),
        ("curves", "Training curves and health", _curves_section(train, [a["step"] for a in alarms])),
        ("attention", "Attention maps",
         _explorer_link(explorer)
         + (_attention_section(run, seed, grid) if attention else "<p class='muted'>Left out (--no-attention).</p>")),
        ("evaluation", "Evaluation scores", _evaluation_section(run, evals, config)),
        ("config", "Configuration", config_html),
    ]
    page = html_page(f"sagan report: {run.resolve().name}", "", sections)
    out = Path(out) if out else run / "report.html"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise SaganError(f"cannot write {out}: {exc.strerror}") from None
    return out
