"""Learning curves: averaging over seeds, "labels needed to reach a target" and the stopping rule
(``stopping_rule``: whether more labels still pay, notes above it) (no Django).

A curve is a list of points ``{"labels": n, "accuracy": a, "macro_f1": f, ...}`` with increasing
``labels``. Curves of several seeds are averaged at the label counts they all reached; the value of a
curve at ``n`` is that of its last point at or before ``n`` (the model a user would have then).
"""

from __future__ import annotations

import numpy as np

from .sampling import uniform_keys


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
    """The dashboard's former signal, kept as ``bench/stopping.py``'s baseline: the slope of a
    least-squares line through the curve's points in its last ``window`` labels, as the gain in ``key``
    per 100 labels; ``stop`` when it is under ``min_gain_per_100`` (half a point by default). ``None``
    with fewer than three points there. It ignores the points' noise: on held-out sets of a few
    hundred labels the slope of a few versions is mostly noise (``stopping_rule`` replaces it)."""
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


# ------------------------------------------------------------------------------------ the stopping rule
# "More labels have stopped paying" means: the next ``HORIZON`` labels would raise accuracy by at most
# ``MAX_GAIN``. Its evidence is stabilising predictions (Bloodgood & Vijay-Shanker, CoNLL 2009): Cohen's
# kappa between two models' predicted classes on a fixed "stop set" of pool items, which needs no
# labels, so it can be large (2,000 items, as theirs) and its estimate is precise (``stop_set``).
#
# Why the comparison spans ``HORIZON`` labels, not one retraining: two models that disagree on a share
# ``d = 1 − p_o`` of the items differ in accuracy on them by at most ``d``, and ``d = (1 − κ)(1 − p_e) ≤
# 1 − κ`` (Bloodgood & Grothendieck 2013 prove the F-measure analogue). So κ ≥ 1 − MAX_GAIN between the
# model now and the model ``HORIZON`` labels ago says the last ``HORIZON`` labels changed accuracy on the
# stop set by at most MAX_GAIN; a learning curve is concave, so the next ``HORIZON`` labels pay no more.
# With the defaults (1 point per 500 labels) the threshold is 0.99, Bloodgood & Vijay-Shanker's own. Their
# successive-version comparison would make the rule depend on how often the project retrains (versions
# ten labels apart always agree). When the reference lies further back, ``span`` labels (the newest
# version with at most ``labels − HORIZON``; at most ``2·HORIZON`` back), the threshold is
# ``1 − MAX_GAIN·span/HORIZON``: a concave curve's mean slope over the longer span is at least its
# recent one. As theirs, the rule asks it of ``WINDOW`` = 3 versions in a row (every one, not the mean).
#
# Cross-check: the held-out curve's gain per 100 labels over at least ``HORIZON`` labels (weighted least
# squares; each point's binomial variance ``p(1 − p)/n_eval`` sets the noise floor, widened by the
# scatter when the points disagree more than that). When its one-sided 95 % lower bound is above the
# threshold, labels still pay whatever the predictions do. It never declares a stop on its own: with
# held-out sets of a few hundred labels its standard error is several tenths of a point per 100 labels,
# larger than the gains it would have to rule out.
HORIZON = 500
MAX_GAIN = 0.01
WINDOW = 3
STOP_SET_SIZE = 2000
STOP_SET_SALT = 0x5709
Z_95 = 1.6448536269514722  # one-sided 95 %


def prediction_agreement(a, b) -> dict:
    """Cohen's kappa ``(p_o − p_e)/(1 − p_e)`` between two models' predicted classes of the same items
    (``p_o`` the share of items on which they agree, ``p_e`` the agreement their class shares alone
    would give), with ``p_o`` and the item count. Identical predictions have kappa 1 (``p_e = 1``
    would otherwise leave it undefined); no items: ``None`` for both."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"two prediction vectors of one length needed, got shapes {a.shape} and {b.shape}")
    n = int(a.size)
    if n == 0:
        return {"kappa": None, "agreement": None, "n": 0}
    p_o = float(np.mean(a == b))
    if p_o == 1.0:
        return {"kappa": 1.0, "agreement": 1.0, "n": n}
    _, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    k = int(codes.max()) + 1
    p_e = float((np.bincount(codes[:n], minlength=k) / n) @ (np.bincount(codes[n:], minlength=k) / n))
    return {"kappa": (p_o - p_e) / (1.0 - p_e), "agreement": p_o, "n": n}


def stop_set(ids, seed: int, *, size: int = STOP_SET_SIZE) -> np.ndarray:
    """The stop set among ``ids`` (all the pool's items, labelled or not): the ``size`` of smallest
    seeded uniform key, in id order. The keys depend on (seed, id) only, so the set is chosen once:
    labelling changes nothing, and a new item joins only with a smaller key than the largest, which it
    displaces. Labelled items stay in: with uncertainty sampling the items left unlabelled are the
    easy ones, whose predictions settle long before the model stops improving on the others."""
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    if len(ids) <= size:
        return ids
    keys = uniform_keys(ids, int(seed), salt=STOP_SET_SALT)
    return np.sort(ids[np.argsort(keys, kind="stable")[:size]])


def stability_reference(earlier: list[tuple[int, int]], labels: int, *, horizon: int = HORIZON) -> int | None:
    """Which earlier version a model trained on ``labels`` labels is compared with: of ``earlier``
    ``(version, n_labels)`` pairs, the newest with at most ``labels − horizon`` labels, provided it
    has more than ``labels − 2·horizon`` (``None`` otherwise)."""
    fits = [(n, v) for v, n in earlier if labels - 2 * horizon < n <= labels - horizon]
    return max(fits)[1] if fits else None


def stability_threshold(span: int, *, horizon: int = HORIZON, max_gain: float = MAX_GAIN) -> float:
    """The kappa two models ``span`` labels apart must reach (module notes above)."""
    return 1.0 - max_gain * span / horizon


def held_out_gain(points: list[dict], *, horizon: int = HORIZON, key: str = "accuracy", z: float = Z_95) -> dict | None:
    """The held-out ``key``'s gain per 100 labels over the curve's last ``horizon`` labels or more: a
    weighted least-squares line through the points from the newest one at or before ``last − horizon``
    on, each weighted by its binomial variance ``p̄(1 − p̄)/n_eval`` (``p̄`` the window's pooled score).
    ``se`` is the binomial one (``noise_floor``) times ``√max(1, χ²/(m − 2))``. ``None`` when the points
    (with ``n_eval``) do not span ``horizon`` labels or are fewer than three."""
    usable = [p for p in points if p.get(key) is not None and (p.get("n_eval") or 0) > 0]
    if not usable:
        return None
    last = usable[-1]["labels"]
    starts = [i for i, p in enumerate(usable) if p["labels"] <= last - horizon]
    if not starts:
        return None
    window = usable[starts[-1] :]
    if len(window) < 3:
        return None
    x = np.array([p["labels"] for p in window], dtype=np.float64)
    y = np.array([p[key] for p in window], dtype=np.float64)
    n = np.array([p["n_eval"] for p in window], dtype=np.float64)
    pooled = (float(n @ y) + 1.0) / (float(n.sum()) + 2.0)  # kept off 0 and 1
    w = n / (pooled * (1.0 - pooled))
    x_bar, y_bar = float(w @ x / w.sum()), float(w @ y / w.sum())
    sxx = float(w @ (x - x_bar) ** 2)
    slope = float(w @ ((x - x_bar) * (y - y_bar)) / sxx)
    chi2 = float(w @ (y - y_bar - slope * (x - x_bar)) ** 2)
    floor = float(np.sqrt(1.0 / sxx))
    se = floor * float(np.sqrt(max(1.0, chi2 / (len(x) - 2)))) if len(x) > 2 else floor
    return {
        "per_100": 100 * slope,
        "se": 100 * se,
        "noise_floor": 100 * floor,
        "low": 100 * (slope - z * se),
        "high": 100 * (slope + z * se),
        "from_labels": int(x[0]),
        "to_labels": int(x[-1]),
        "points": len(x),
        "n_eval": int(n[-1]),
    }


def stopping_rule(
    history: list[dict],
    *,
    horizon: int = HORIZON,
    max_gain: float = MAX_GAIN,
    window: int = WINDOW,
    z: float = Z_95,
) -> dict:
    """Whether more labels have stopped paying, with the evidence (module notes above).

    ``history``: the project's trained model versions, oldest first, each ``{"labels", "version",
    "accuracy" (held out, or None), "n_eval", "stability"}`` where ``stability`` is what
    ``acquisition.services.stopping`` stored for it (``kappa`` against the model ``span`` labels
    earlier) or None. ``state``: ``stop`` (the last ``window`` versions each agree with their
    reference at least as much as the threshold, and the held-out gain does not contradict it),
    ``go`` (the held-out gain's lower bound is above the threshold, or predictions still change more
    than the threshold allows) or ``no_evidence`` (too few versions with a comparison)."""
    threshold_per_100 = 100 * max_gain / horizon
    gain = held_out_gain(history, horizon=horizon, z=z)
    stability = []
    for point in history[-window:]:
        record = point.get("stability") or {}
        if record.get("kappa") is None or record.get("span") is None:
            continue
        bar = stability_threshold(record["span"], horizon=horizon, max_gain=max_gain)
        stability.append(
            {
                "version": point.get("version"),
                "labels": int(point["labels"]),
                "reference_version": record.get("reference_version"),
                "span": int(record["span"]),
                "kappa": float(record["kappa"]),
                "threshold": bar,
                "stable": float(record["kappa"]) >= bar,
            }
        )
    enough = len(history) >= window and len(stability) == window
    pays = gain is not None and gain["low"] > threshold_per_100
    if pays:
        state, reason = "go", "held-out accuracy still rises faster than the threshold"
    elif not enough:
        state, reason = (
            "no_evidence",
            (f"needs {window} model versions in a row, each compared with the model about {horizon} labels earlier"),
        )
    elif all(s["stable"] for s in stability):
        state, reason = (
            "stop",
            (
                f"the last {window} versions changed their predictions on the stop set too little for "
                f"{horizon} more labels to raise accuracy by {100 * max_gain:g} point(s)"
            ),
        )
    else:
        state, reason = "go", "predictions on the stop set still change more than the threshold allows"
    return {
        "state": state,
        "stop": state == "stop",
        "pays": pays,
        "reason": reason,
        "horizon": horizon,
        "max_gain": max_gain,
        "window": window,
        "threshold_per_100": threshold_per_100,
        "stability": stability,
        "gain": gain,
        "labels": int(history[-1]["labels"]) if history else 0,
    }
