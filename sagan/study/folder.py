"""The folder a study or a search writes into (`--out`): claimed with a marker, spec.json, that names the spec
it belongs to. A study never writes into, nor with --fresh deletes from, a folder that holds something else: a
training run's folder, the repository root, another spec's study."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from sagan.errors import ConfigError
from sagan.study.files import read_json, write_json

MARKER = "spec.json"


def claim_folder(out: Path, marker: dict, outputs: Iterable[str], fresh: bool) -> None:
    """Check that `out` is new, empty or this spec's study folder, then write the marker; with `fresh`, first
    delete `outputs` (names in `out`) from a study folder of any spec. Refusals are one line and touch nothing."""
    old = read_json(out / MARKER)
    if old is None or "identity" not in old:
        if out.is_dir() and any(out.iterdir()):
            what = "a training run's folder" if (out / "checkpoints").is_dir() else "not empty"
            action = "--fresh deletes nothing there" if fresh else "a study writes nothing there"
            raise ConfigError(f"{out} is not a study folder ({what}, with no study {MARKER}), so {action}; give "
                              "the study's own folder, or a new or empty one, as --out")
    elif old["identity"] != marker["identity"] and not fresh:
        raise ConfigError(f"{out} holds the study {old.get('spec', {}).get('name')!r} of another spec; use another "
                          "--out, or --fresh to delete it and start over")
    if fresh and old is not None:
        for name in outputs:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / MARKER, marker)  # first, so that a kill right after leaves a folder this study owns
        (out / "runs").mkdir(exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write the study folder {out}: {exc.strerror}; choose another --out") from None
