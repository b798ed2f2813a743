"""Cutting long lists into pieces: ``IN (…)`` lists and bulk writes stay under the databases' limits."""

from __future__ import annotations

from collections.abc import Iterator, Sequence


def iter_chunks(values: Sequence, size: int) -> Iterator[Sequence]:
    """Consecutive slices of ``values`` of at most ``size`` elements."""
    for start in range(0, len(values), size):
        yield values[start : start + size]
