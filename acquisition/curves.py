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


def stopping_signal(
    curve: list[dict], *, window: int = 500, min_gain_per_100: float = 0.005, key: str = "accuracy"
) -> dict | None:
    """Whether more labels still pay: the slope of a least-squares line through the curve's points in its
    last ``window`` labels, as the gain in ``key`` per 100 labels. ``stop`` when it is under
    ``min_gain_per_100`` (half a point by default). ``None`` with fewer than three points there."""
    points = [p for p in curve if p.get(key) is not None]
    if not points:
        return None
    last = points[-1]["labels"]
    recent = [p for p in points if p["labels"] >= last - window]
    if len(recent) < 3:
        return None
    x = np.array([p["labels"] for p in recent], dtype=np.float64)
    y = np.array([p[key] for p in recent], dtype=np.float64)
    if np.ptp(x) == 0:
        return None
    slope = float(np.polyfit(x, y, 1)[0])
    gain = slope * 100
    return {
        "gain_per_100": gain,
        "threshold": min_gain_per_100,
        "stop": gain < min_gain_per_100,
        "from_labels": int(x.min()),
        "to_labels": int(x.max()),
        "points": len(recent),
    }
