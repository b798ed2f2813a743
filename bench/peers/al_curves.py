"""Peer learning curves (modAL, small-text) for ``bench/learning_curve.py``.

Runs in the peer virtualenv of ``al_queries.ensure_venv`` (``bench/.venvs/al-peers``: ``modAL-python`` +
``small-text``, NumPy, scikit-learn; no torch). The loop is each library's own, with the model Quorum's
bench evaluates: scikit-learn's multinomial ``LogisticRegression(C=10)`` (Quorum's logistic head with
``weight_decay=0.1`` minimises the same objective, save for the unpenalised intercept), on the same
embeddings, from the same seed labels, in batches of the same sizes (``sizes.npy``: the label count of
every round, cut at the checkpoints as Quorum's schedule is).

Lines (``--line``):

======================  ============================================================================
modal_margin            ``modAL.models.ActiveLearner(estimator, query_strategy=margin_sampling)``:
                        ``learner.query(X_pool, n_instances=k)``, then the new rows added and a refit
                        on all of them (``teach``'s work; see the note in ``run_curve``)
smalltext_breaking      ``small_text.PoolBasedActiveLearner`` with ``BreakingTies()`` and a
                        ``SklearnClassifierFactory``: ``query(num_samples=k)``, then ``update(y)``
======================  ============================================================================

Usage (inside the peer venv)::

    python bench/peers/al_curves.py --data DIR --line modal_margin --out result.json

``DIR`` holds ``X.npy`` (pool, n×d float32), ``y.npy``, ``Xt.npy``, ``yt.npy`` (test), ``seed.npy`` (the
seed labels' pool rows) and ``sizes.npy``. The result JSON has ``curve`` (labels, accuracy, macro_f1 per
round), ``seconds`` and the versions.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

LINES = ("modal_margin", "smalltext_breaking")


def _accuracy_f1(y_true, y_pred, n_classes: int) -> tuple[float, float]:
    import numpy as np

    acc = float(np.mean(y_true == y_pred))
    tp = np.bincount(y_true[y_true == y_pred], minlength=n_classes).astype(np.float64)
    pred = np.bincount(y_pred, minlength=n_classes).astype(np.float64)
    true = np.bincount(y_true, minlength=n_classes).astype(np.float64)
    denom = pred + true
    f1 = np.divide(2 * tp, denom, out=np.zeros(n_classes), where=denom > 0)
    return acc, float(f1.mean())


def _estimator(max_iter: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=10.0, max_iter=max_iter)


def run_curve(data: pathlib.Path, line: str, max_iter: int) -> dict:
    import warnings

    import numpy as np

    # scikit-learn warns that 77 classes among 77 seed labels look like a regression target
    warnings.filterwarnings("ignore", category=UserWarning)

    X, y = np.load(data / "X.npy"), np.load(data / "y.npy")
    Xt, yt = np.load(data / "Xt.npy"), np.load(data / "yt.npy")
    seed_idx, sizes = np.load(data / "seed.npy"), np.load(data / "sizes.npy")
    n_classes = int(max(y.max(), yt.max())) + 1
    curve = []
    started = time.perf_counter()
    if line == "modal_margin":
        from modAL.models import ActiveLearner
        from modAL.uncertainty import margin_sampling

        labelled = np.zeros(len(X), dtype=bool)
        labelled[seed_idx] = True
        learner = ActiveLearner(
            estimator=_estimator(max_iter),
            query_strategy=margin_sampling,
            X_training=X[seed_idx],
            y_training=y[seed_idx],
        )
        for round_no, n in enumerate(sizes):
            assert labelled.sum() == n
            acc, f1 = _accuracy_f1(yt, learner.predict(Xt), n_classes)
            curve.append({"labels": int(n), "accuracy": acc, "macro_f1": f1})
            if round_no == len(sizes) - 1:
                break
            cand = np.flatnonzero(~labelled)
            picked, _ = learner.query(X[cand], n_instances=int(sizes[round_no + 1] - n))
            new = cand[np.asarray(picked)]
            labelled[new] = True
            # what ``learner.teach(X[new], y[new])`` does: modAL 0.4.2.1's ``teach`` passes
            # ``force_all_finite`` to scikit-learn's ``check_X_y``, which scikit-learn >= 1.8 refuses
            learner.X_training = np.concatenate([learner.X_training, X[new]])
            learner.y_training = np.concatenate([learner.y_training, y[new]])
            learner._fit_to_known()
    elif line == "smalltext_breaking":
        from small_text import BreakingTies, PoolBasedActiveLearner, SklearnClassifierFactory, SklearnDataset

        factory = SklearnClassifierFactory(_estimator(max_iter), n_classes)
        classes = np.arange(n_classes)
        learner = PoolBasedActiveLearner(factory, BreakingTies(), SklearnDataset(X, y, target_labels=classes))
        learner.initialize_data(np.asarray(seed_idx), y[seed_idx])
        test = SklearnDataset(Xt, yt, target_labels=classes)
        for round_no, n in enumerate(sizes):
            assert len(learner.indices_labeled) == n
            acc, f1 = _accuracy_f1(yt, np.asarray(learner.classifier.predict(test)), n_classes)
            curve.append({"labels": int(n), "accuracy": acc, "macro_f1": f1})
            if round_no == len(sizes) - 1:
                break
            picked = learner.query(num_samples=int(sizes[round_no + 1] - n))
            learner.update(y[picked])
    else:
        raise SystemExit(f"unknown line {line!r}; choose from {', '.join(LINES)}")
    import importlib.metadata as md

    return {
        "line": line,
        "curve": curve,
        "seconds": time.perf_counter() - started,
        "versions": {p: md.version(p) for p in ("modAL-python", "small-text", "numpy", "scikit-learn")},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=pathlib.Path, required=True)
    ap.add_argument("--line", required=True, choices=LINES)
    ap.add_argument("--max-iter", type=int, default=200, help="L-BFGS iterations of each LogisticRegression fit")
    ap.add_argument("--out", type=pathlib.Path, required=True)
    args = ap.parse_args(argv)
    args.out.write_text(json.dumps(run_curve(args.data, args.line, args.max_iter)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
