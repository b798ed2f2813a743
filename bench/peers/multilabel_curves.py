"""Peer multi-label learning curves (small-text, modAL) for ``bench/multilabel_curve.py``.

Runs in the peer virtualenv of ``al_queries.ensure_venv`` (``bench/.venvs/al-peers``: ``modAL-python``
0.4.2.1 + ``small-text`` 1.4.1, NumPy, scikit-learn; no torch). Each line is its library's own loop with
scikit-learn's one-vs-rest ``LogisticRegression(C=10)`` (the objective of Quorum's one-vs-rest head with
``weight_decay=0.1``), on the same embeddings, from the same seed rows, in batches of the same sizes
(``sizes.npy``), predicting a tag when its probability exceeds 0.5 (the libraries' own rule).

Lines (``--line``):

=====================  =============================================================================
smalltext_cvirs        ``small_text.PoolBasedActiveLearner`` with
                       ``query_strategies.CategoryVectorInconsistencyAndRanking`` (Reyes et al. 2018)
                       and ``SklearnClassifierFactory(..., kwargs={"multi_label": True})``
modal_max_loss         ``modAL.models.ActiveLearner(OneVsRestClassifier(...), modAL.multilabel.max_loss)``
                       (Li et al., ICIP 2004)
modal_mean_max_loss    the same with ``modAL.multilabel.mean_max_loss``
modal_avg_score        the same with ``modAL.multilabel.avg_score`` (Esuli & Sebastiani, ECIR 2009)
sklearn_random         uniform picks with the same scikit-learn model (what the peers' model gets
                       without a strategy)
=====================  =============================================================================

small-text 1.4.1 (the newest release on PyPI) has no other multi-label strategy
(``LabelCardinalityInconsistency`` and ``AdaptiveActiveLearning`` are not in it).

Usage (inside the peer venv)::

    python bench/peers/multilabel_curves.py --data DIR --line smalltext_cvirs --out result.json

``DIR`` holds ``X.npy`` (pool, n×d float32), ``Y.npy`` (n×L 0/1), ``Xt.npy``, ``Yt.npy`` (test), ``seed.npy``
(the seed rows), ``sizes.npy`` (the label count of every round) and ``rng.npy`` (the seed, for
``sklearn_random``). The result JSON has ``curve`` (labels, micro_f1, macro_f1, subset_accuracy,
hamming_loss of the line's own model at every round), ``order`` (the pool rows in the order they were
labelled), ``seconds`` and the versions.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

LINES = ("smalltext_cvirs", "modal_max_loss", "modal_mean_max_loss", "modal_avg_score", "sklearn_random")


def _metrics(Y_true, Y_pred) -> dict:
    from sklearn.metrics import accuracy_score, f1_score, hamming_loss

    return {
        "micro_f1": float(f1_score(Y_true, Y_pred, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(Y_true, Y_pred, average="macro", zero_division=0)),
        "subset_accuracy": float(accuracy_score(Y_true, Y_pred)),
        "hamming_loss": float(hamming_loss(Y_true, Y_pred)),
    }


def _estimator(max_iter: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=10.0, max_iter=max_iter)


def run_curve(data: pathlib.Path, line: str, max_iter: int) -> dict:
    import warnings

    import numpy as np

    # a tag with one outcome among the labelled rows: OneVsRestClassifier warns and predicts it constant
    warnings.filterwarnings("ignore", category=UserWarning)

    X, Y = np.load(data / "X.npy"), np.load(data / "Y.npy").astype(np.int64)
    Xt, Yt = np.load(data / "Xt.npy"), np.load(data / "Yt.npy").astype(np.int64)
    seed_idx, sizes = np.load(data / "seed.npy"), np.load(data / "sizes.npy")
    n_labels = Y.shape[1]
    curve = []
    order = [int(i) for i in seed_idx]
    started = time.perf_counter()
    if line == "smalltext_cvirs":
        from scipy.sparse import csr_matrix
        from small_text import PoolBasedActiveLearner, SklearnClassifierFactory, SklearnDataset
        from small_text.query_strategies import CategoryVectorInconsistencyAndRanking

        factory = SklearnClassifierFactory(_estimator(max_iter), n_labels, kwargs={"multi_label": True})
        targets = np.arange(n_labels)
        Ys = csr_matrix(Y)
        pool = SklearnDataset(X, Ys, target_labels=targets)
        learner = PoolBasedActiveLearner(factory, CategoryVectorInconsistencyAndRanking(pbar=None), pool)
        learner.initialize_data(np.asarray(seed_idx), Ys[seed_idx])
        test = SklearnDataset(Xt, csr_matrix(Yt), target_labels=targets)
        for round_no, n in enumerate(sizes):
            assert len(learner.indices_labeled) == n
            pred = learner.classifier.predict(test)
            pred = pred.toarray() if hasattr(pred, "toarray") else np.asarray(pred)
            curve.append({"labels": int(n), **_metrics(Yt, pred)})
            if round_no == len(sizes) - 1:
                break
            picked = learner.query(num_samples=int(sizes[round_no + 1] - n))
            order.extend(int(i) for i in picked)
            learner.update(Ys[picked])
    elif line.startswith("modal_") or line == "sklearn_random":
        from sklearn.multiclass import OneVsRestClassifier

        labelled = np.zeros(len(X), dtype=bool)
        labelled[seed_idx] = True
        model = OneVsRestClassifier(_estimator(max_iter))
        rng = np.random.default_rng(int(np.load(data / "rng.npy")))
        if line == "sklearn_random":
            learner = None
            model.fit(X[seed_idx], Y[seed_idx])
        else:
            from modAL import multilabel
            from modAL.models import ActiveLearner

            strategy = getattr(multilabel, line.removeprefix("modal_"))
            learner = ActiveLearner(
                estimator=model, query_strategy=strategy, X_training=X[seed_idx], y_training=Y[seed_idx]
            )
            # modAL 0.4.2.1's ``max_loss`` / ``mean_max_loss`` read ``classes_`` from the learner they are
            # given, which ``ActiveLearner`` does not forward: expose the estimator's (0..L-1)
            learner.classes_ = model.classes_
        for round_no, n in enumerate(sizes):
            assert labelled.sum() == n
            pred = (learner or model).predict(Xt)
            curve.append({"labels": int(n), **_metrics(Yt, np.asarray(pred))})
            if round_no == len(sizes) - 1:
                break
            cand = np.flatnonzero(~labelled)
            k = int(sizes[round_no + 1] - n)
            if learner is None:
                new = rng.choice(cand, size=k, replace=False)
            else:
                picked, _ = learner.query(X[cand], n_instances=k)
                new = cand[np.asarray(picked)]
            labelled[new] = True
            order.extend(int(i) for i in new)
            if learner is None:
                rows = np.asarray(order)
                model.fit(X[rows], Y[rows])
            else:
                # what ``learner.teach(X[new], Y[new])`` does: modAL 0.4.2.1's ``teach`` passes
                # ``force_all_finite`` to scikit-learn's ``check_X_y``, which scikit-learn >= 1.8 refuses
                learner.X_training = np.concatenate([learner.X_training, X[new]])
                learner.y_training = np.concatenate([learner.y_training, Y[new]])
                learner._fit_to_known()
                learner.classes_ = learner.estimator.classes_
    else:
        raise SystemExit(f"unknown line {line!r}; choose from {', '.join(LINES)}")
    import importlib.metadata as md

    return {
        "line": line,
        "curve": curve,
        "order": order,
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
