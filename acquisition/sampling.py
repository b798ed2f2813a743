"""Pure helpers of a scoring run's batch: deterministic random keys, ranking, shortlist sizes and the
queue's priority scale. NumPy only (no Django), so chunks on different workers compute the same.

- ``uniform_keys``: a uniform [0, 1) key per item id (splitmix64 of seed, salt and id). The items
  with the ``m`` smallest keys are a uniform random sample of size ``m``, computable chunk by chunk.
- ``ranked``: descending score, ties broken by the smaller id.
- ``shortlist_size``: what a chunk sends to the reducer (``k`` for per-item strategies; for greedy
  diversity strategies ``max(4k, k + 256)``, see ``acquisition.services.scoring``).
- ``exploration_priorities``: exploration pick j of m sits just below the strategy pick at position
  ``ceil((j + 1) · n / (m + 1))``, so any prefix of the queue holds its share of exploration.
- ``rank_scale``: the entries in serving order get priority ``(n − j)/n`` for the j-th of n, one
  [0, 1] scale for every strategy (what disputed items asking for an extra label are compared to).
"""

from __future__ import annotations

import numpy as np


def uniform_keys(ids: np.ndarray, seed: int, *, salt: int = 0) -> np.ndarray:
    """A uniform [0, 1) key per item id: splitmix64 of (seed, salt, id)."""
    with np.errstate(over="ignore"):
        x = np.asarray(ids, dtype=np.uint64) + np.uint64((seed * 0x9E3779B1 + salt * 0x85EBCA77) & (2**64 - 1))
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def ranked(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Order of descending score, ties broken by the smaller item id (deterministic)."""
    return np.lexsort((ids, -np.asarray(scores, dtype=np.float64)))


def shortlist_size(k: int, *, greedy: bool) -> int:
    """Items a chunk hands the reducer: ``k``, or ``max(4k, k + 256)`` for a greedy diversity batch."""
    return max(4 * k, k + 256) if greedy else k


def n_exploration(fraction: float, k: int) -> int:
    """Uniform random picks in a batch of ``k``: ``round(fraction · k)``, at most ``k``."""
    return min(k, int(round(fraction * k)))


def exploration_priorities(priorities: np.ndarray, m: int) -> np.ndarray:
    """Priorities for ``m`` exploration picks spread through a batch of strategy picks (module docstring)."""
    order = np.sort(np.asarray(priorities, dtype=np.float64))[::-1]
    if not len(order):
        return -np.arange(m, dtype=np.float64)
    slots = np.minimum(len(order) - 1, np.ceil((np.arange(m) + 1) * len(order) / (m + 1)).astype(np.int64) - 1)
    return np.nextafter(order[slots], -np.inf)


def rank_scale(priorities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Serving order (descending priority, ties keep their order) and the ``(n − j)/n`` priorities."""
    order = np.argsort(-np.asarray(priorities, dtype=np.float64), kind="stable")
    n = len(order)
    return order, (n - np.arange(n, dtype=np.float64)) / max(n, 1)
