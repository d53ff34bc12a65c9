"""Training statistics: one JSON object per line in metrics.jsonl, mirrored to TensorBoard."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path


class StatsWriter:
    """Appends `{"step": s, "time": t, **values}` to RUN/metrics.jsonl and scalars to RUN/tensorboard."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self._file = open(self.path, "a", buffering=1)  # line-buffered: a crash loses at most one line
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except ImportError:  # TensorBoard is optional at run time; the JSON lines are the record
                self._tb = None

    def log(self, step: int, values: dict, kind: str = "train") -> None:
        record = {"step": step, "time": round(time.time(), 3), "kind": kind}
        record.update({k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()})
        self._file.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: str | Path) -> list[dict]:
    """All records of a run's metrics.jsonl; a torn last line (from a crash) is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    records = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records
