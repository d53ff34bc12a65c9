"""A study's JSON files (run records, study.json, the record folder's files): written atomically, read
forgivingly (a missing or half-written file reads as None)."""

from __future__ import annotations

import json
from pathlib import Path

from sagan.checkpoint import atomic_write


def write_json(path: Path, data: dict) -> None:
    """Atomically (temporary file, fsync, rename): a kill never leaves a half-written record."""
    text = json.dumps(data, indent=1, sort_keys=False)
    atomic_write(path, lambda f: f.write(text.encode()))


def read_json(path: Path) -> dict | None:
    """The file's mapping, or None where it is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
