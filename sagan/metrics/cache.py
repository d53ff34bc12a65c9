"""On-disk cache of reference features, so a second evaluation does not extract the reference again.

An entry is an `.npz` (no pickles) holding the reference features, their mean and covariance, and a JSON
description of everything the features depend on: data set, split, count and subset, extractor and the
sha256 of its weights, and the preprocessing. The file name is a hash of that description, so changing any
part of it (another extractor, new weights, another resize) misses the cache instead of reusing stale numbers.
Default folder: ~/.cache/sagan/stats, or $SAGAN_CACHE/stats.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

CACHE_FORMAT = 1


def cache_dir(override: str | Path | None = None) -> Path:
    """Where reference statistics live: `override`, else $SAGAN_CACHE/stats, else ~/.cache/sagan/stats."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("SAGAN_CACHE")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "sagan") / "stats"


def cache_key(description: dict) -> str:
    """A stable hex key for a JSON-able description of the reference features."""
    blob = json.dumps({"format": CACHE_FORMAT, **description}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cache_path(description: dict, directory: str | Path | None = None) -> Path:
    """The file that holds (or will hold) the entry for `description`; its name is readable and unique."""
    label = "-".join(str(description.get(k, "")) for k in ("dataset", "split", "extractor", "count"))
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_")[:80]
    return cache_dir(directory) / f"{label}-{cache_key(description)}.npz"


def load_reference(description: dict, directory: str | Path | None = None) -> dict[str, np.ndarray] | None:
    """{"features", "mu", "sigma"} for `description`, or None when not cached (or unreadable)."""
    path = cache_path(description, directory)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = json.loads(str(z["description"]))
            if stored != json.loads(json.dumps({"format": CACHE_FORMAT, **description}, default=str)):
                return None  # a hash collision or a hand-edited file: recompute
            return {k: z[k] for k in ("features", "mu", "sigma")}
    except (OSError, ValueError, KeyError):  # truncated or corrupt: recompute and overwrite
        return None


def save_reference(description: dict, entry: dict[str, np.ndarray], directory: str | Path | None = None) -> Path:
    """Write an entry atomically (a crash never leaves a half-written file under the final name)."""
    path = cache_path(description, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"format": CACHE_FORMAT, **description}, sort_keys=True, default=str)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, description=np.array(text), **{k: np.asarray(entry[k]) for k in ("features", "mu", "sigma")})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
