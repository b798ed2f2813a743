"""Learning curves: averaging over seeds and "labels needed to reach a target" (no Django).

A curve is a list of points ``{"labels": n, "accuracy": a, "macro_f1": f, ...}`` with increasing
``labels``. Curves of several seeds are averaged at the label counts they all reached; the value of a
curve at ``n`` is that of its last point at or before ``n`` (the model a user would have then).
"""

from __future__ import annotations

import numpy as np


def value_at(curve: list[dict], labels: int, key: str = "accuracy") -> float | None:
    """The ``key`` of the last point with at most ``labels`` labels (``None`` before the first)."""
    best = None
    for point in curve:
        if point["labels"] <= labels and point.get(key) is not None:
            best = point[key]
    return best


def mean_curve(curves: list[list[dict]], keys=("accuracy", "macro_f1")) -> list[dict]:
    """The mean (and standard deviation) over seeds at every label count that every curve reached."""
    curves = [c for c in curves if c]
    if not curves:
        return []
    last = min(c[-1]["labels"] for c in curves)
    marks = sorted({p["labels"] for c in curves for p in c if p["labels"] <= last})
    out = []
    for n in marks:
        point = {"labels": int(n)}
        for key in keys:
            values = [value_at(c, n, key) for c in curves]
            values = [v for v in values if v is not None]
            if len(values) == len(curves):
                point[key] = float(np.mean(values))
                point[f"{key}_std"] = float(np.std(values))
        if len(point) > 1:
            out.append(point)
    return out


def labels_to_reach(curve: list[dict], target: float, key: str = "accuracy") -> int | None:
    """The fewest labels at which ``curve`` reaches ``target`` (``None`` if it never does)."""
    for point in curve:
        if point.get(key) is not None and point[key] >= target:
            return int(point["labels"])
    return None
