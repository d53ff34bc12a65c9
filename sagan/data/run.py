"""A run's data as the run saw it, and its class names.

A run records what it trained on: the data spec, where named sets live, the labels file, label column and
`allow_unlabelled` of a labelled folder, and the class names in the order of the model's class indices. Every
command that loads a run's data for that run (explore's real images, the reference of `sagan eval` and of a
study's scoring) takes its label options from `RunData.label_options`, and `load_run_data` loads the data
with them, so no command can forget the labels file and fall back to a folder's sub-folders.

The class helpers turn indices into names for captions and messages (`class_name`), and a `--class` value,
a name or an index, into an index (`resolve_class`). Runs from before class names were recorded still load:
their classes are shown as "class K".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sagan.errors import ConfigError, DataError, did_you_mean

LABEL_KEYS = ("labels", "label_column", "allow_unlabelled")


@dataclass(frozen=True)
class RunData:
    """What a run trained on. `class_names`: None where the run did not record them (older runs)."""

    data: str | None
    root: str | None = None
    labels: str | None = None
    label_column: str | None = None
    allow_unlabelled: bool = False
    class_names: tuple[str, ...] | None = None

    @classmethod
    def from_config(cls, cfg) -> RunData:
        """From a TrainConfig or its dict (config.yaml, a checkpoint's "train_config")."""
        values = cfg if isinstance(cfg, dict) else cfg.to_dict()
        names = values.get("class_names")
        return cls(values.get("data"), values.get("data_root"), values.get("labels"), values.get("label_column"),
                   bool(values.get("allow_unlabelled")), None if names is None else tuple(names))

    @classmethod
    def from_info(cls, info: dict) -> RunData:
        """From the info of `sagan.checkpoint.load_generator`."""
        options = info.get("labels") or {}
        names = info.get("class_names")
        return cls(info.get("data"), info.get("data_root"), options.get("labels"), options.get("label_column"),
                   bool(options.get("allow_unlabelled")), None if names is None else tuple(names))

    def is_own(self, against: str | None) -> bool:
        """True when `against` names this run's data (the same text, or the same folder)."""
        if against is None or against == self.data:
            return True
        if self.data is None:
            return False
        a, b = Path(against).expanduser(), Path(self.data).expanduser()
        return a.exists() and b.exists() and os.path.samefile(a, b)

    def label_options(self, against: str | None = None) -> dict:
        """The labels, label_column and allow_unlabelled with which to load `against` (default: the run's data):
        the run's own labels file for its own data, none for other data (which brings its own labels)."""
        if not self.labels or not self.is_own(against):
            return {"labels": None, "label_column": None, "allow_unlabelled": False}
        return {"labels": self.labels, "label_column": self.label_column, "allow_unlabelled": self.allow_unlabelled}


def load_run_data(run: RunData | dict, resolution: int, channels: int | None = None, split: str = "train",
                  download: bool = False):
    """The run's data (an ImageData) with the run's labels file and label column, at `resolution`.

    `run`: a RunData or the info of `load_generator`. DataError when the run names no data, or when the data's
    classes are no longer the ones the run recorded (the labels file or the folders changed since).
    """
    from sagan.data import load_data

    run = run if isinstance(run, RunData) else RunData.from_info(run)
    if not run.data:
        raise DataError("the run does not name its training data")
    data = load_data(run.data, resolution, channels, split=split, root=run.root, download=download,
                     **run.label_options())
    if run.class_names and list(data.class_names) != list(run.class_names):
        found = ", ".join(data.class_names) if data.class_names else "none"
        raise DataError(f"{data.source} has the classes {found}, but the run trained on "
                        f"{', '.join(run.class_names)}; the data or its labels file changed since")
    return data


# ----------------------------------------------------------------------------------------------------------
# Class names


def class_names_of(info: dict) -> list[str] | None:
    """The class names a checkpoint or exported generator recorded, in index order: [] for an unconditional
    model, None where it did not record them or they do not fit its number of classes."""
    num = (info.get("model") or {}).get("num_classes", 0)
    if not num:
        return []
    names = info.get("class_names")
    return list(names) if names is not None and len(names) == num else None


def class_name(k: int, names: list[str] | tuple[str, ...] | None) -> str:
    """Class k's name, or "class k" where the names are unknown."""
    return names[k] if names and 0 <= k < len(names) else f"class {k}"


def name_list(names: list[str] | tuple[str, ...], most: int = 30) -> str:
    """The names joined by commas, the first `most` of them and how many there are in all."""
    shown = ", ".join(names[:most])
    return shown + (f", ... ({len(names)} in all)" if len(names) > most else "")


def resolve_class(value: int | str | None, num_classes: int, names: list[str] | tuple[str, ...] | None = None,
                  what: str = "the model") -> int | None:
    """The class index a `--class` value means: a class name (exact, else ignoring case) or an index.

    A name is looked up first, so a class named "3" means that class, whatever its index. ConfigError (one line,
    listing the classes and the closest name) when the value names no class.
    """
    if value is None:
        return None
    if not num_classes:
        raise ConfigError(f"class {value}: {what} is unconditional; drop --class")
    names = list(names or [])
    if isinstance(value, str):
        text = value.strip()
        if text in names:
            return names.index(text)
        folded = [i for i, n in enumerate(names) if n.casefold() == text.casefold()]
        if len(folded) == 1:
            return folded[0]
        try:
            value = int(text)
        except ValueError:
            known = (f"its classes are {name_list(names)}" if names
                     else f"it does not record class names: give an index 0..{num_classes - 1}")
            raise ConfigError(f"no class {text!r} in {what}{did_you_mean(text, names)}; {known}") from None
    if not 0 <= value < num_classes:
        known = f" ({name_list(names)})" if names else ""
        raise ConfigError(f"class {value} is out of range: {what} has classes 0..{num_classes - 1}{known}")
    return int(value)
