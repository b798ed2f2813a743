"""Labelled text datasets for the simulator and benchmarks (no Django).

A dataset is either a folder with ``train.csv`` and ``test.csv`` or one CSV file, with a ``split``
column (``train`` / ``test``) or without one: then the rows are all the pool, and a seeded,
stratified ``HELD_OUT`` share of each class (at least one row of a class with two or more) is set
aside as the test split (``held_out_split``; the shipped demo slice,
``annotation/demo/banking77_sample.csv``, is such a file). Texts are in a ``text`` column, classes in
``category`` or ``label``; or, for a multi-label dataset, tag sets in a ``labels`` column with the names
joined by ``|`` (an empty cell is the empty set): ``Split.labels`` is then an (n, L) 0/1 matrix and
``LabelledDataset.multi_label`` is true.
A ``categories.json`` (a JSON list) or ``labels.txt`` (one name a line) beside the CSV files fixes the
class order; otherwise classes are sorted.
Files are read with the csv module (texts may hold quoted newlines).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .encoders import get_encoder

LABEL_COLUMNS = ("category", "label")
TAGS_COLUMN = "labels"
TAG_SEPARATOR = "|"
HELD_OUT = 0.2  # test share of a single CSV without a split column


class DatasetError(ValueError):
    """The dataset is missing, malformed or empty; the message says which file and what."""


@dataclass(frozen=True)
class Split:
    texts: list[str]
    labels: np.ndarray  # int64 indices into ``LabelledDataset.categories``; multi-label: (n, L) 0/1

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class LabelledDataset:
    name: str
    train: Split
    test: Split
    categories: list[str]
    multi_label: bool = False


def _rows(path: Path) -> tuple[list[dict[str, str]], str]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read it as UTF-8 CSV ({exc})") from None
    if "text" not in fields:
        raise DatasetError(f"{path}: no 'text' column (columns: {fields})")
    label_column = next((name for name in (*LABEL_COLUMNS, TAGS_COLUMN) if name in fields), None)
    if label_column is None:
        raise DatasetError(f"{path}: no 'category' or 'label' column, nor 'labels' for tag sets (columns: {fields})")
    for line, row in enumerate(rows, start=2):
        if not (row.get("text") or "").strip():
            raise DatasetError(f"{path}, line {line}: empty text")
        if label_column != TAGS_COLUMN and not (row.get(label_column) or "").strip():
            raise DatasetError(f"{path}, line {line}: empty {label_column}")
    return rows, label_column


def _tag_names(cell: str) -> list[str]:
    return [name.strip() for name in (cell or "").split(TAG_SEPARATOR) if name.strip()]


def held_out_split(labels: list[str], fraction: float = HELD_OUT, seed: int = 0) -> np.ndarray:
    """Boolean mask of the rows held out as the test split: per class, ``round(n · fraction)`` rows
    (at least one when the class has two or more, never all of them), drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    classes = np.asarray(labels, dtype=object)
    test = np.zeros(len(labels), dtype=bool)
    for name in sorted(set(labels)):
        rows = np.flatnonzero(classes == name)
        k = min(max(int(round(rows.size * fraction)), 1 if rows.size >= 2 else 0), rows.size - 1)
        test[rng.permutation(rows)[:k]] = True
    return test


def load_dataset(path: str | Path) -> LabelledDataset:
    """Read a dataset folder or a single CSV with a ``split`` column (module docstring)."""
    path = Path(path)
    if path.is_dir():
        missing = [name for name in ("train.csv", "test.csv") if not (path / name).is_file()]
        if missing:
            raise DatasetError(f"{path}: a dataset folder needs train.csv and test.csv; missing {missing}")
        train_rows, train_col = _rows(path / "train.csv")
        test_rows, test_col = _rows(path / "test.csv")
        parts = [(train_rows, train_col), (test_rows, test_col)]
        categories_file = path / "categories.json"
    elif path.is_file():
        rows, column = _rows(path)
        if rows and "split" not in rows[0]:  # all of it is the pool; a stratified share tests
            test = held_out_split([row[column].strip() for row in rows])
            parts = [([r for r, t in zip(rows, test, strict=True) if t == side], column) for side in (False, True)]
        else:
            splits = {(row.get("split") or "").strip().lower() for row in rows}
            unknown = splits - {"train", "test"}
            if unknown:
                raise DatasetError(f"{path}: unknown split values {sorted(unknown)} (use train / test)")
            parts = [([r for r in rows if r["split"].strip().lower() == name], column) for name in ("train", "test")]
        categories_file = path.with_name("categories.json")
    else:
        raise DatasetError(f"{path}: no such file or folder")
    if not parts[0][0] or not parts[1][0]:
        raise DatasetError(f"{path}: the train and test splits must both have rows")

    multi = parts[0][1] == TAGS_COLUMN
    if any((col == TAGS_COLUMN) != multi for _, col in parts):
        raise DatasetError(f"{path}: the train and test splits must both have tag sets (labels) or both one label")
    if multi:
        seen = sorted({name for rows, col in parts for row in rows for name in _tag_names(row[col])})
    else:
        seen = sorted({row[col].strip() for rows, col in parts for row in rows})
    names_file = categories_file.with_name("labels.txt")
    if not categories_file.is_file() and names_file.is_file():
        categories = [line.strip() for line in names_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        unknown = sorted(set(seen) - set(categories))
        if unknown:
            raise DatasetError(f"{names_file}: classes used in the data but not listed: {unknown[:5]}")
    elif categories_file.is_file():
        categories = [str(c) for c in json.loads(categories_file.read_text(encoding="utf-8"))]
        unknown = sorted(set(seen) - set(categories))
        if unknown:
            raise DatasetError(f"{categories_file}: classes used in the data but not listed: {unknown[:5]}")
    else:
        categories = seen
    if len(categories) < 2:
        raise DatasetError(f"{path}: needs at least two classes, found {categories}")
    index = {name: i for i, name in enumerate(categories)}
    if multi:

        def tags(rows, col) -> np.ndarray:
            Y = np.zeros((len(rows), len(categories)), dtype=np.int64)
            for n, row in enumerate(rows):
                Y[n, [index[name] for name in _tag_names(row[col])]] = 1
            return Y

        train, test = (Split([row["text"] for row in rows], tags(rows, col)) for rows, col in parts)
    else:
        train, test = (
            Split([row["text"] for row in rows], np.array([index[row[col].strip()] for row in rows], dtype=np.int64))
            for rows, col in parts
        )
    return LabelledDataset(
        name=path.stem if path.is_file() else path.name,
        train=train,
        test=test,
        categories=categories,
        multi_label=multi,
    )


def dataset_embeddings(
    dataset: LabelledDataset, encoder_name: str, cache_dir: Path, *, device: str = "auto", log=print
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) vectors of the dataset's texts, encoded once and cached as ``.npy`` files named by
    the dataset, the encoder and a digest of the texts (a changed dataset or encoder never reuses
    stale vectors)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", encoder_name).strip("-")[-60:]
    out = []
    for name, split in (("train", dataset.train), ("test", dataset.test)):
        digest = hashlib.sha256("\x1e".join(split.texts).encode("utf-8")).hexdigest()[:12]
        path = Path(cache_dir) / f"{dataset.name}-{name}-{slug}-{digest}.npy"
        if path.is_file():
            vectors = np.load(path)
        else:
            encoder = get_encoder(encoder_name, device=device)
            log(f"encoding {len(split):,} {name} texts with {encoder_name} on {encoder.device} ...")
            started = time.perf_counter()
            vectors = encoder.encode(split.texts)
            log(f"  {time.perf_counter() - started:.0f} s, cached in {path}")
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.stem + f".{uuid.uuid4().hex[:8]}.tmp.npy")
            np.save(tmp, vectors)
            tmp.replace(path)
        if vectors.shape[0] != len(split):
            raise DatasetError(f"{path} holds {vectors.shape[0]} rows for {len(split)} texts; delete it")
        out.append(np.ascontiguousarray(vectors, dtype=np.float32))
    return out[0], out[1]
