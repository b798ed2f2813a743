"""Distribution drift of newly pushed items against the items a model was trained on (NumPy only).

Both sets of embeddings are projected on the first ``k`` principal components of the reference set
(centred on its mean); each component is compared on its own:

* **PSI**, the population stability index, over ``bins`` bins cut at the reference's quantiles:
  ``PSI = Σ_b (a_b − e_b) · ln(a_b / e_b)`` with ``e_b`` / ``a_b`` the reference / new shares of bin
  ``b`` (floored at ``EPS`` so an empty bin does not give an infinite index). Levels (the usual
  rule of thumb): ``< 0.1`` ok, ``0.1–0.25`` warning, ``> 0.25`` critical.
* **KS**, the two-sample Kolmogorov-Smirnov statistic ``D = sup_x |F_ref(x) − F_new(x)|`` (the same
  value as ``scipy.stats.ks_2samp``), with its asymptotic p-value.

The report's level is that of the largest PSI over the components.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-4
WARNING, CRITICAL = 0.1, 0.25


def psi(reference: np.ndarray, new: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``new`` against ``reference`` (1-d samples), quantile bins."""
    reference, new = np.asarray(reference, dtype=np.float64), np.asarray(new, dtype=np.float64)
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    expected = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
    actual = np.bincount(np.searchsorted(edges, new, side="right"), minlength=len(edges) + 1)
    e = np.maximum(expected / expected.sum(), EPS)
    a = np.maximum(actual / actual.sum(), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_statistic(reference: np.ndarray, new: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic ``sup |F_ref − F_new|`` (exact, by merging the samples)."""
    reference, new = np.sort(np.asarray(reference, dtype=np.float64)), np.sort(np.asarray(new, dtype=np.float64))
    values = np.concatenate([reference, new])
    cdf_ref = np.searchsorted(reference, values, side="right") / reference.size
    cdf_new = np.searchsorted(new, values, side="right") / new.size
    return float(np.max(np.abs(cdf_ref - cdf_new)))


def ks_pvalue(d: float, n: int, m: int) -> float:
    """Approximate p-value of ``D``: the one-sample Kolmogorov distribution at the effective size
    ``round(nm/(n+m))`` (what ``scipy.stats.ks_2samp(method="asymp")`` computes)."""
    from scipy.stats import kstwo

    return float(kstwo.sf(d, np.round(n * m / (n + m))))


def level(value: float) -> str:
    return "critical" if value > CRITICAL else "warning" if value >= WARNING else "ok"


def principal_components(reference: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, components)``: the reference's mean and its first ``k`` principal directions ``(k, d)``."""
    reference = np.asarray(reference, dtype=np.float64)
    mean = reference.mean(axis=0)
    _, _, vt = np.linalg.svd(reference - mean, full_matrices=False)
    return mean, vt[: min(k, vt.shape[0])]


def drift_report(reference: np.ndarray, new: np.ndarray, *, components: int = 3, bins: int = 10) -> dict:
    """PSI and KS per principal component of the reference, and the overall level (JSON-ready)."""
    reference, new = np.asarray(reference, dtype=np.float64), np.asarray(new, dtype=np.float64)
    mean, basis = principal_components(reference, components)
    ref_proj, new_proj = (reference - mean) @ basis.T, (new - mean) @ basis.T
    rows = []
    for j in range(basis.shape[0]):
        d = ks_statistic(ref_proj[:, j], new_proj[:, j])
        rows.append(
            {
                "component": j + 1,
                "psi": psi(ref_proj[:, j], new_proj[:, j], bins),
                "ks": d,
                "ks_pvalue": ks_pvalue(d, len(reference), len(new)),
            }
        )
    worst = max((row["psi"] for row in rows), default=0.0)
    return {
        "n_reference": int(len(reference)),
        "n_new": int(len(new)),
        "components": rows,
        "psi_max": worst,
        "ks_max": max((row["ks"] for row in rows), default=0.0),
        "level": level(worst),
        "thresholds": {"warning": WARNING, "critical": CRITICAL},
    }
