"""Peer acquisition queries (modAL, small-text) for ``bench/acquisition_speed.py``.

Runs in its OWN virtualenv (``bench/.venvs/al-peers``: ``modAL-python`` + ``small-text`` and their NumPy /
scikit-learn / SciPy; no torch), created by :func:`ensure_venv` from the main environment. One query per
process, so the peak-memory figure belongs to that query alone.

The peers get the *same* fitted model as Quorum: scikit-learn ``LogisticRegression`` objects whose
``coef_`` / ``intercept_`` are Quorum's committee weights (nothing is refitted), and the same pool rows.

Queries (``--query``):

==============  ======================================================================================
entropy         ``modAL.uncertainty.entropy_sampling(learner, X, n_instances=k)``
margin          ``modAL.uncertainty.margin_sampling``
least_conf      ``modAL.uncertainty.uncertainty_sampling``
qbc             ``modAL.disagreement.vote_entropy_sampling(committee of 5 learners, X, k)``
bald            small-text's ``_bald`` on the stacked probabilities of the 5 members + top-k (what its
                ``BALD.query`` does after ``predict_proba(dropout_sampling=...)``)
ranked_batch    ``modAL.batch.uncertainty_batch_sampling`` (ranked batch mode: uncertainty + distance to the
                labelled set, greedy in-batch) with ``X_training`` = the labelled set
coreset         ``small_text.query_strategies.coresets.greedy_coreset(..., distance_metric="euclidean")``
==============  ======================================================================================

Usage (inside the peer venv)::

    python bench/peers/al_queries.py --data DIR --query margin --n 1000000 --k 50 --out result.json

``DIR`` holds ``pool.npy`` (n, d) float32, ``labelled.npy`` (|L|, d), ``W.npy`` (M, d, C) and ``b.npy``
(M, C); member 0 is the single model, members 1.. the committee. The result JSON has ``seconds`` (wall time of the query call),
``peak_rss_mb`` (peak RSS growth during the query), ``indices`` and the versions.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

PEERS = ("modAL-python==0.4.2.1", "small-text==1.4.1")
DEFAULT_VENV = pathlib.Path(__file__).resolve().parents[1] / ".venvs" / "al-peers"


def ensure_venv(venv_dir: pathlib.Path = DEFAULT_VENV) -> pathlib.Path:
    """Create ``venv_dir`` with modAL and small-text unless present; return its python."""
    py = venv_dir / "bin" / "python"
    check = [str(py), "-c", "import modAL, small_text"]
    if py.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return py
    print(f"[peers] creating {venv_dir} with {', '.join(PEERS)} ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv_dir)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--progress-bar", "off", *PEERS], check=True)
    if subprocess.run([str(py), "-m", "pip", "show", "-q", "torch"], capture_output=True).returncode == 0:
        raise RuntimeError(f"the peers pulled torch into {venv_dir}; refusing to use it")
    return py


# ----------------------------------------------------------------------------- inside the peer venv


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (peak RSS) to the current RSS
    except OSError:
        pass


def _classifiers(W, b):
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    out = []
    for m in range(W.shape[0]):
        lr = LogisticRegression()
        lr.coef_ = np.ascontiguousarray(W[m].T)
        lr.intercept_ = b[m].copy()
        lr.classes_ = np.arange(W.shape[2])
        lr.n_features_in_ = W.shape[1]
        out.append(lr)
    return out


def run_query(data: pathlib.Path, query: str, n: int, k: int) -> dict:
    import numpy as np
    from modAL.batch import uncertainty_batch_sampling
    from modAL.disagreement import vote_entropy_sampling
    from modAL.models import ActiveLearner, Committee
    from modAL.uncertainty import entropy_sampling, margin_sampling, uncertainty_sampling

    X = np.ascontiguousarray(np.load(data / "pool.npy", mmap_mode="r")[:n])
    W, b = np.load(data / "W.npy"), np.load(data / "b.npy")
    clfs = _classifiers(W, b)
    learner = ActiveLearner(estimator=clfs[0])
    call = None
    if query in ("entropy", "margin", "least_conf"):
        fn = {"entropy": entropy_sampling, "margin": margin_sampling, "least_conf": uncertainty_sampling}[query]

        def call():
            return fn(learner, X, n_instances=k)[0]
    elif query == "qbc":
        committee = Committee(learner_list=[ActiveLearner(estimator=c) for c in clfs[1:]])

        def call():
            return vote_entropy_sampling(committee, X, n_instances=k)[0]
    elif query == "bald":
        from small_text.query_strategies.bayesian import _bald

        def call():
            proba = np.stack([c.predict_proba(X) for c in clfs[1:]], axis=1)  # (n, M, C) as small-text expects
            scores = _bald(proba)
            top = np.argpartition(-scores, k)[:k]
            return top[np.argsort(-scores[top])]
    elif query == "ranked_batch":
        learner.X_training = np.load(data / "labelled.npy")

        def call():
            return uncertainty_batch_sampling(learner, X, n_instances=k)[0]
    elif query == "coreset":
        from small_text.query_strategies.coresets import greedy_coreset

        L = np.load(data / "labelled.npy")
        both = np.concatenate([X, L])
        unl, lab = np.arange(len(X)), np.arange(len(X), len(both))

        def call():
            return greedy_coreset(both, unl, lab, k, distance_metric="euclidean", normalized=True)
    else:
        raise SystemExit(f"unknown query {query!r}")

    base = _rss_mb("VmRSS")
    _reset_peak()
    t0 = time.perf_counter()
    idx = call()
    seconds = time.perf_counter() - t0
    peak = _rss_mb("VmHWM") - base
    import importlib.metadata as md

    return {
        "query": query,
        "n": int(len(X)),
        "k": k,
        "seconds": seconds,
        "peak_rss_mb": peak,
        "indices": [int(i) for i in np.asarray(idx).ravel()],
        "versions": {p: md.version(p) for p in ("modAL-python", "small-text", "numpy", "scikit-learn")},
        "threads": os.environ.get("OMP_NUM_THREADS"),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=pathlib.Path, required=True)
    ap.add_argument("--query", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--out", type=pathlib.Path, required=True)
    args = ap.parse_args(argv)
    result = run_query(args.data, args.query, args.n, args.k)
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
