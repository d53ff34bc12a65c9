"""Class labels for a folder of images from a CSV file, instead of from sub-folder names.

The CSV has a header row, a column of image paths relative to the folder (named `file`, `path`, `filename` or
`image`, else the first column) and one or more label columns. The label column is `label_column` when given,
else one named `label`, `class` or `category`, else the first column after the paths. Class names are the label
values as text, sorted, so class i is the i-th name in that order on every machine.

Every image must have exactly one row with a non-empty label, and every row must name an image in the folder.
A file that breaks this is refused with one message that counts each kind of problem, unless `allow_unlabelled`
is set: then only the images with a row and a label are used, and a warning counts what was left out (images
without a row or with an empty label, rows whose image is not in the folder).
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

from sagan.errors import DataError, did_you_mean

PATH_COLUMNS = ("file", "path", "filename", "image")
LABEL_COLUMNS = ("label", "class", "category")


def _pick(header: list[str], wanted: str | None, preferred: tuple[str, ...], exclude: str | None,
          csv_path: Path) -> str:
    if wanted is not None:
        if wanted not in header:
            raise DataError(f"{csv_path} has no column '{wanted}'{did_you_mean(wanted, header)}; "
                            f"its columns are {', '.join(header)}: pass one of them as --label-column")
        return wanted
    for name in preferred:
        if name in header and name != exclude:
            return name
    rest = [h for h in header if h != exclude]
    if not rest:
        raise DataError(f"{csv_path} has only the column '{exclude}'; add a column of labels")
    return rest[0]


def read_label_table(csv_path: str | Path, label_column: str | None = None) -> tuple[str, list[tuple[str, str]]]:
    """(label column used, [(path as written, label)]) from a labels CSV; DataError when it cannot be used."""
    csv_path = Path(csv_path).expanduser()
    if not csv_path.is_file():
        raise DataError(f"labels file not found: {csv_path.absolute()}")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte-order mark
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            if len(header) < 2:
                raise DataError(f"{csv_path} needs a header row with a column of image paths and a column of labels "
                                f"(e.g. file,label); found {', '.join(header) or 'nothing'}")
            reader.fieldnames = header
            path_col = next((c for c in PATH_COLUMNS if c in header), header[0])
            label_col = _pick(header, label_column, LABEL_COLUMNS, path_col, csv_path)
            if label_col == path_col:
                raise DataError(f"--label-column '{label_col}' is the column of image paths in {csv_path}; "
                                "choose a column of labels")
            rows = [((row.get(path_col) or "").strip(), (row.get(label_col) or "").strip()) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read {csv_path} as a CSV file of labels ({e})") from e
    return label_col, rows


def _examples(items: list[str]) -> str:
    return ", ".join(items[:2]) + (", ..." if len(items) > 2 else "")


def labels_for_files(root: str | Path, paths: list[str], csv_path: str | Path, label_column: str | None = None,
                     allow_unlabelled: bool = False) -> tuple[list[str], list[int], list[str], str]:
    """Match the image files found under `root` with a labels CSV.

    Returns (the paths that are used, in their given order; their class indices; the sorted class names;
    the label column used). DataError when files and rows do not match one to one, unless `allow_unlabelled`.
    """
    root = Path(root)
    csv_path = Path(csv_path).expanduser()
    column, rows = read_label_table(csv_path, label_column)
    rel = {os.path.normpath(os.path.relpath(p, root)): p for p in paths}
    table: dict[str, str] = {}
    no_image, duplicates = [], []
    for written, label in rows:
        key = os.path.normpath(written.replace("\\", "/")) if written else ""
        if os.path.isabs(key):
            key = os.path.normpath(os.path.relpath(key, root))
        if key not in rel:
            no_image.append(written or "(empty path)")
        elif key in table and table[key] != label:
            duplicates.append(written)
        else:
            table[key] = label
    no_row = [k for k in rel if k not in table]
    empty = [k for k in rel if table.get(k) == ""]
    problems = []
    if no_row:
        problems.append(f"{len(no_row)} image(s) have no row (e.g. {_examples(no_row)})")
    if empty:
        problems.append(f"{len(empty)} row(s) have an empty '{column}' (e.g. {_examples(empty)})")
    if no_image:
        problems.append(f"{len(no_image)} row(s) name no image under {root} (e.g. {_examples(no_image)})")
    if duplicates:
        problems.append(f"{len(duplicates)} image(s) have rows with different labels (e.g. {_examples(duplicates)})")
    if duplicates or (problems and not allow_unlabelled):
        fix = "fix the file" if duplicates else ("fix the file, or pass --allow-unlabelled to use only the images "
                                                "that have a row and a label")
        raise DataError(f"{csv_path} does not match {root}: {'; '.join(problems)}; {fix}")
    keep = [k for k in rel if table.get(k)]
    if not keep:
        raise DataError(f"no image under {root} has a label in column '{column}' of {csv_path}; "
                        "check that the paths are relative to the folder")
    if problems:
        warnings.warn(f"{csv_path}: using the {len(keep)} labelled images; left out: {'; '.join(problems)}",
                      stacklevel=3)
    class_names = sorted({table[k] for k in keep})
    index = {name: i for i, name in enumerate(class_names)}
    return [rel[k] for k in keep], [index[table[k]] for k in keep], class_names, column
