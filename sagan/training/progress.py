"""Progress: a tqdm bar in a terminal, plain log lines otherwise (files, CI, non-zero ranks print nothing)."""

from __future__ import annotations

import sys
import time

from sagan.config import NO_STEP_LIMIT


class Progress:
    def __init__(self, total: int, minutes: float = 0.0, enabled: bool = True) -> None:
        """total: the step limit (NO_STEP_LIMIT: none, so only the step is shown); minutes: the wall-clock
        budget (0: none), shown beside the elapsed minutes."""
        self.enabled, self.minutes = enabled, minutes
        self.total = None if total >= NO_STEP_LIMIT else total
        self.tty = enabled and sys.stderr.isatty()
        self.t0 = time.time()
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="step", dynamic_ncols=True, file=sys.stderr)

    def update(self, step: int, log: dict, alarm: str | None = None) -> None:
        if not self.enabled:
            return
        text = (f"D {log['loss_d']:.3f} G {log['loss_g']:.3f} | {log['images_per_sec']:.0f} img/s (last window)"
                + (" | ALARM" if alarm else ""))
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix_str(text, refresh=True)
        else:
            steps = f"step {step}" + (f"/{self.total}" if self.total else "")
            clock = f"{(time.time() - self.t0) / 60:.1f}" + (f"/{self.minutes:g}" if self.minutes else "")
            print(f"{steps} | {text} | {clock} min", file=sys.stderr, flush=True)

    def write(self, message: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
