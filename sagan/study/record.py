"""A study's record in the repository: what its finished runs measured, and the scorer that measured them, kept
where the next session's checkout finds them (spec key `record: docs/studies/NAME/`).

The run folders (checkpoints, samples) live outside the checkout and do not outlast a session; the record does.
Running the study again, in any checkout that has the record, skips the runs it holds and starts the others from
their seed. Layout:

    RECORD/spec.json                    the spec and its identity (a record of another spec is refused)
    RECORD/finished/ARM/seed_S.json     a finished (or failed) run's study_run.json: scores at each budget fraction,
                                        steps, minutes, CPU, device, provenance
    RECORD/costs.json                   with `budget: {steps: S, equal: time}`: each arm's measured seconds per step,
                                        which set its step budget; a later checkout keeps these budgets
    RECORD/scorer/classifier-KEY.*      the classifier that scored the runs (`features: classifier` only): trained
                                        once, then read from here by every later session (sagan.metrics.classifier)
    RECORD/study.md                     the study's tables as of the last session

Scores are comparable only when one extractor computed them: a run scored by other weights than the record's
(sha256 in each score's provenance) is refused, and a record whose runs were scored by a classifier it does not
keep cannot take new runs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sagan.errors import ConfigError, SaganError
from sagan.study.files import read_json, write_json
from sagan.study.spec import StudySpec

SCORER = "scorer"
FINISHED = "finished"
COSTS = "costs.json"  # with `equal: time`: the measured seconds per step that set each arm's steps (sagan.study.cost)


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, data)


def scorer_shas(record: dict) -> set[str]:
    """The sha256 of the extractor weights behind every score of a run record."""
    return {s["provenance"]["extractor_weights_sha256"] for s in record.get("segments", [])
            if s.get("provenance", {}).get("extractor_weights_sha256")}


class KeptScorer:
    """What every record folder shares: its marker (spec.json, the spec's identity) and the classifier that scored
    its runs. A subclass says which scores it holds (`shas`) and which folders `fresh` empties (`parts`)."""

    parts: tuple[str, ...] = (SCORER,)

    def __init__(self, spec, folder: str | Path):
        self.spec, self.folder = spec, Path(folder)

    @property
    def scorer_dir(self) -> Path:
        return self.folder / SCORER

    def shas(self) -> set[str]:
        """The sha256 of the extractor weights behind every score the record holds."""
        raise NotImplementedError

    def costs(self) -> dict | None:
        """The measured seconds per step that set the step budgets of an `equal: time` spec, or None."""
        return read_json(self.folder / COSTS)

    def keep_costs(self, costs: dict) -> None:
        _write(self.folder / COSTS, costs)

    def marker(self) -> dict:
        return {"identity": self.spec.identity(), "spec": self.spec.to_dict()}

    def prepare(self, fresh: bool = False) -> None:
        """Create the record folder or check that it is this spec's; `fresh` empties it. Refuses a record whose
        runs cannot be compared with new ones (see `check_scorer`)."""
        marker = self.folder / "spec.json"
        old = read_json(marker) if marker.exists() else None
        if old is not None and old.get("identity") != self.spec.identity() and not fresh:
            raise ConfigError(f"the record folder {self.folder} holds the study {old.get('spec', {}).get('name')!r} "
                              "of another spec; give this spec another record: folder, or --fresh to empty it")
        if fresh:
            for name in self.parts:
                target = self.folder / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        try:
            _write(marker, self.marker())
        except OSError as exc:
            raise ConfigError(f"cannot write the record folder {self.folder}: {exc.strerror}") from None
        self.check_scorer()

    def scorer_file(self) -> Path | None:
        files = sorted(self.scorer_dir.glob("classifier-*.safetensors"))
        return files[0] if files else None

    def expected_sha(self) -> str | None:
        """The sha256 of the weights every score of this record must come from: the kept scorer's, else the
        recorded runs' (None for an empty record). Refuses a record that mixes extractors."""
        import hashlib

        kept = self.scorer_file()
        shas = self.shas()
        if kept is not None:
            shas.add(hashlib.sha256(kept.read_bytes()).hexdigest())
        if len(shas) > 1:
            short = ", ".join(sorted(s[:12] for s in shas))
            raise ConfigError(f"the record {self.folder} mixes scores from different feature extractor weights "
                              f"(sha256 {short}), which cannot be compared; keep the runs of one scorer there and "
                              "move the others aside")
        return next(iter(shas), None)

    def check_scorer(self) -> None:
        """A classifier-scored record must keep its classifier: new runs scored by another one would not compare."""
        expected = self.expected_sha()
        if self.spec.eval.get("features") == "classifier" and expected and self.scorer_file() is None:
            raise ConfigError(f"the runs recorded in {self.folder} were scored by a classifier (weights sha256 "
                              f"{expected[:12]}...) that the record does not keep in {SCORER}/, so new runs, scored "
                              "by a newly trained one, could not be compared with them; move those runs aside as a "
                              "separate result and start the record afresh")

    def keep_scorer(self, provenance: dict) -> None:
        """After a run is scored: refuse scores from weights other than the record's, and keep the classifier
        (weights and its metadata) in the record the first time."""
        sha = provenance.get("extractor_weights_sha256")
        expected = self.expected_sha()
        if expected and sha != expected:
            raise SaganError(f"this run was scored by feature extractor weights sha256 {str(sha)[:12]}..., the "
                             f"record {self.folder} by {expected[:12]}...; its scores would not compare, so it is "
                             "not recorded")
        source = Path(str(provenance.get("extractor_weights", "")))
        if provenance.get("extractor") != "classifier" or self.scorer_file() is not None:
            return
        if not source.is_file() or not source.with_suffix(".json").is_file():
            raise SaganError(f"the classifier that scored this run is not on disk ({source}), so the record cannot "
                             "keep it; run the study without --no-cache")
        self.keep_scorer_files(source)

    def keep_scorer_files(self, source: Path) -> None:
        """Copy a classifier (the .json beside it first, the weights last: a file under its name is complete)."""
        self.scorer_dir.mkdir(parents=True, exist_ok=True)
        for src in (source.with_suffix(".json"), source):
            tmp = self.scorer_dir / f"{src.name}.{os.getpid()}.tmp"
            shutil.copyfile(src, tmp)
            os.replace(tmp, self.scorer_dir / src.name)


class StudyRecord(KeptScorer):
    """The record folder of one study spec."""

    parts = (FINISHED, SCORER, COSTS)

    def path(self, arm: str, seed: int) -> Path:
        return self.folder / FINISHED / arm / f"seed_{seed}.json"

    def shas(self) -> set[str]:
        return set().union(*(scorer_shas(r) for r in self.records()))

    def load(self, arm: str, seed: int) -> dict | None:
        """The recorded run of (arm, seed), or None."""
        record = read_json(self.path(arm, seed))
        return record if record and record.get("done") else None

    def records(self) -> list[dict]:
        """Every recorded run."""
        found = [read_json(p) for p in sorted((self.folder / FINISHED).glob("*/seed_*.json"))]
        return [r for r in found if r and r.get("done")]

    def save(self, record: dict) -> None:
        """Keep a finished (or failed) run's record."""
        for segment in record.get("segments", []):
            self.keep_scorer(segment.get("provenance", {}))
        _write(self.path(record["arm"], record["seed"]), record)


def study_record(spec: StudySpec) -> StudyRecord | None:
    """The spec's record folder, or None when it names none."""
    return StudyRecord(spec, spec.record) if spec.record else None
