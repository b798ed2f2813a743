"""Crowd answers in CSV <-> the integer arrays of :mod:`annotation.dawid_skene` and :mod:`annotation.agreement`.

Pure Python + NumPy (no Django), shared by the ``aggregate`` command and the benchmark.

Encoding rules (:func:`encode_answers`):
- item, annotator and label values stay strings; surrounding whitespace is stripped;
- items and annotators are numbered in order of first appearance, so the output follows the file;
- labels are numbered in *natural* order: numerically when every label is a number ("2" before
  "10"), otherwise as strings. The aggregators break ties towards the lowest index, i.e. the
  smallest label in that order.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["AnswersError", "EncodedAnswers", "encode_answers", "factorize", "read_answers_csv", "read_truth_csv"]


class AnswersError(ValueError):
    """A CSV of answers that cannot be read: missing file or column, no rows."""


@dataclass(frozen=True)
class EncodedAnswers:
    """Long-format answers as integer indices plus the names behind them."""

    items: np.ndarray  # (n,) int64 index into item_names
    workers: np.ndarray  # (n,) int64 index into worker_names
    labels: np.ndarray  # (n,) int64 index into label_names
    item_names: np.ndarray  # (n_items,) str
    worker_names: np.ndarray  # (n_workers,) str
    label_names: np.ndarray  # (n_classes,) str

    @property
    def counts(self) -> dict:
        """``n_items``, ``n_workers``, ``n_classes`` keyword arguments for the aggregators."""
        return {
            "n_items": len(self.item_names),
            "n_workers": len(self.worker_names),
            "n_classes": len(self.label_names),
        }

    def __len__(self) -> int:
        return int(self.items.size)


def _as_number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if np.isfinite(number) else None


def factorize(values: Sequence[str], *, order: str = "appearance") -> tuple[np.ndarray, np.ndarray]:
    """Codes and names of string values.

    ``order="appearance"``: names in order of first occurrence. ``order="natural"``: numeric order
    when every value parses as a finite number, else string order.
    """
    array = np.asarray(values, dtype=str)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=str)
    names, first, codes = np.unique(array, return_index=True, return_inverse=True)
    if order == "appearance":
        ranking = np.argsort(first, kind="stable")
    elif order == "natural":
        numbers = [_as_number(name) for name in names]
        if all(number is not None for number in numbers):
            ranking = np.lexsort((names, np.asarray(numbers, dtype=np.float64)))
        else:
            ranking = np.arange(names.size)
    else:
        raise ValueError(f"unknown order {order!r}")
    rank = np.empty_like(ranking)
    rank[ranking] = np.arange(ranking.size)
    return rank[codes.ravel()].astype(np.int64), names[ranking]


def encode_answers(item_values, worker_values, label_values) -> EncodedAnswers:
    """Encode three equal-length sequences of strings (see the module docstring for the order)."""
    if not (len(item_values) == len(worker_values) == len(label_values)):
        raise ValueError("item, worker and label columns differ in length")
    items, item_names = factorize(item_values)
    workers, worker_names = factorize(worker_values)
    labels, label_names = factorize(label_values, order="natural")
    return EncodedAnswers(items, workers, labels, item_names, worker_names, label_names)


def _column_index(header: list[str], column: str, path) -> int:
    """Position of ``column`` in ``header``; a bare integer that is no header name is a 0-based position."""
    if column in header:
        return header.index(column)
    if column.isdigit() and int(column) < len(header):
        return int(column)
    present = ", ".join(repr(name) for name in header)
    raise AnswersError(f"{path}: column {column!r} not found; columns present: {present}")


def _pick(path, columns: tuple[str, ...]) -> tuple[list[tuple[str, ...]], int]:
    """The stripped cells of ``columns`` of every row where all of them are non-empty, and the
    number of other non-blank rows (skipped)."""
    path = Path(path)
    if not path.is_file():
        raise AnswersError(f"{path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [cell.strip() for cell in next(reader, [])]
            if not any(header):
                raise AnswersError(f"{path}: empty file (expected a header row and answers)")
            positions = [_column_index(header, column, path) for column in columns]
            width = max(positions) + 1
            kept, skipped = [], 0
            for row in reader:
                if len(row) >= width:
                    cells = tuple(row[p].strip() for p in positions)
                    if all(cells):
                        kept.append(cells)
                        continue
                if any(cell.strip() for cell in row):
                    skipped += 1
    except (UnicodeDecodeError, csv.Error) as error:
        raise AnswersError(f"{path}: not a readable UTF-8 CSV ({error})") from error
    return kept, skipped


def read_answers_csv(
    path, *, item_col: str = "question", worker_col: str = "worker", label_col: str = "answer"
) -> tuple[EncodedAnswers, int]:
    """Read and encode a CSV of answers, one row per (item, annotator, label).

    Columns are found by header name (or by 0-based position given as digits, for files whose
    headers differ). Rows with an empty item, annotator or label cell are skipped. Returns the
    encoded answers and the number of skipped rows. Raises :class:`AnswersError` for a missing
    file, a missing column, or a file without answers.
    """
    kept, skipped = _pick(path, (item_col, worker_col, label_col))
    if not kept:
        raise AnswersError(f"{path}: no answers (only a header, or every row lacks an item, worker or label)")
    items, workers, labels = zip(*kept, strict=True)
    return encode_answers(items, workers, labels), skipped


def read_truth_csv(path, *, item_col: str = "0", label_col: str = "1") -> dict[str, str]:
    """Gold labels ``{item: label}`` from a CSV (by default its first two columns)."""
    kept, _ = _pick(path, (item_col, label_col))
    return dict(kept)
