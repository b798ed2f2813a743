#!/usr/bin/env python
"""Label-error review on BANKING77: precision and recall of Quorum's flags beside cleanlab's.

Set-up, per seed (``--seeds``, default 0,1,2):

1. the BANKING77 train texts (10,003, 77 intents; ``--n`` takes a seeded class-stratified subset,
   e.g. ``--n 3000`` for the few thousand labels of a real project) with their frozen
   all-MiniLM-L6-v2 vectors (encoded once and cached under ``var/cache/`` by ``bench/banking77.py``);
2. ``--noise`` (10 %) of the labels flipped uniformly at random to one of the other classes;
3. out-of-fold probabilities computed ONCE, by Quorum's check itself
   (``acquisition.label_errors.LabelErrorFinder`` with the heads of
   ``acquisition.services.label_errors``: 5-fold stratified, one logistic head per fold with the
   serving model's single-model hyper-parameters, on CPU);
4. on those same probabilities: Quorum's confident learning (all its flags, and the first
   ``--cap`` of them, ``QUORUM_LABEL_ERROR_CAP`` = what one retrain sends to review) and cleanlab's
   ``find_label_issues`` with its defaults (all, and its self-confidence ranking cut at the cap),
   and Quorum's ranking cut at 5 and 25 times the cap (what later retrains send when the same
   labels stay flagged),
   cleanlab 2.9.0 run in its own virtualenv (``bench/peers/cleanlab_peer.py``).

Precision: flipped labels among the flags; recall: flags among the flipped labels. At the cap,
recall cannot exceed cap / flipped (printed as "recall bound"). "agree" is the Jaccard overlap of
Quorum's and cleanlab's flag sets. Seconds: the out-of-fold fits (the bulk of the check's cost in a
retrain; wall and CPU), Quorum's confident learning, cleanlab's ``find_label_issues``. The machine
is small and shared: wall times are noisy, CPU seconds less so.

On a 2-core machine that other processes share, PyTorch's two threads wait on each other (a
logistic head's gradient took 65 ms with two threads and 5 ms with one here): ``--threads 1`` (as
``QUORUM_TORCH_THREADS`` does for a worker) gives the figures of a worker that has its core.

    python bench/label_errors.py [--n 0] [--noise 0.1] [--seeds 0,1,2] [--cap 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "peers"))


def _setup_django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quorum.settings")
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def stratified_subset(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` row indices with every class in proportion (at least two per class), sorted."""
    if n <= 0 or n >= y.size:
        return np.arange(y.size)
    keys = rng.random(y.size)
    rows = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        take = max(2, int(round(n * members.size / y.size)))
        rows.append(members[np.argsort(keys[members])[:take]])
    return np.sort(np.concatenate(rows))


def flip(y: np.ndarray, n_classes: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(noisy labels, flipped rows)``: ``fraction`` of the rows moved to another class, uniformly."""
    flipped = np.sort(rng.choice(y.size, size=int(round(fraction * y.size)), replace=False))
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, n_classes, flipped.size)) % n_classes
    return noisy, flipped


def scores(flags: np.ndarray, flipped: np.ndarray) -> tuple[float, float, float]:
    hits = np.intersect1d(flags, flipped).size
    precision = hits / flags.size if flags.size else float("nan")
    recall = hits / flipped.size if flipped.size else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return precision, recall, f1


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.union1d(a, b).size
    return np.intersect1d(a, b).size / union if union else 1.0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=0, help="labels used (0: all 10,003)")
    parser.add_argument("--noise", type=float, default=0.1, help="share of labels flipped")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--cap", type=int, default=None, help="default: QUORUM_LABEL_ERROR_CAP")
    parser.add_argument("--threads", type=int, default=0, help="PyTorch threads (0: its default, one per core)")
    parser.add_argument("--no-cleanlab", action="store_true")
    args = parser.parse_args(argv)

    _setup_django()
    import torch
    from django.conf import settings

    if args.threads > 0:
        torch.set_num_threads(args.threads)

    from acquisition.committee import HeadCommittee
    from acquisition.label_errors import LabelErrorFinder, find_label_issues, ranked_label_issues
    from acquisition.services.label_errors import single_model_hyperparameters
    from bench.banking77 import banking77_available, cached_embeddings, load_banking77

    if not banking77_available():
        sys.exit("BANKING77 is not under ../shared/datasets/banking77")
    cap = settings.QUORUM_LABEL_ERROR_CAP if args.cap is None else args.cap
    data = load_banking77()
    X_all, _ = cached_embeddings(data, device="cpu")
    y_all = data.train.labels
    n_classes = len(data.categories)
    hyper = single_model_hyperparameters()
    run_cleanlab = None
    if not args.no_cleanlab:
        from cleanlab_peer import CLEANLAB_VERSION, run_cleanlab

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    rows: dict[str, list] = {}
    timing: dict[str, list] = {
        "out-of-fold fits (wall)": [],
        "out-of-fold fits (CPU)": [],
        "Quorum confident learning": [],
        "cleanlab find_label_issues": [],
    }
    sizes = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        subset = stratified_subset(y_all, args.n, rng)
        X, truth = X_all[subset], y_all[subset]
        noisy, flipped = flip(truth, n_classes, args.noise, rng)
        sizes.append((subset.size, flipped.size))

        started, cpu = time.perf_counter(), time.process_time()
        heads = HeadCommittee(**hyper, random_state=seed, device="cpu")
        finder = LabelErrorFinder(heads, random_state=seed).fit(X, noisy, n_classes=n_classes)
        timing["out-of-fold fits (wall)"].append(time.perf_counter() - started)
        timing["out-of-fold fits (CPU)"].append(time.process_time() - cpu)
        proba = finder.pred_probs_
        started = time.perf_counter()
        ours = np.flatnonzero(find_label_issues(noisy, proba))
        ranked = ranked_label_issues(noisy, proba)
        timing["Quorum confident learning"].append(time.perf_counter() - started)
        oof_accuracy = float((proba.argmax(1) == truth).mean())

        results = {
            "Quorum, all flags": (ours, None),
            f"Quorum, at the cap ({cap})": (ranked[:cap], None),
        }
        for rounds in (5, 25):  # what later retrains send, the open flags kept out
            results[f"Quorum, first {rounds * cap} ({rounds} rounds)"] = (ranked[: rounds * cap], None)
        if run_cleanlab is not None:
            peer = run_cleanlab(noisy, proba)
            theirs, their_ranked = (
                np.asarray(peer["issues"], dtype=np.int64),
                np.asarray(peer["ranked"], dtype=np.int64),
            )
            timing["cleanlab find_label_issues"].append(peer["seconds"])
            results[f"cleanlab {CLEANLAB_VERSION} find_label_issues"] = (theirs, ours)
            results[f"cleanlab ranked, first {cap}"] = (their_ranked[:cap], ranked[:cap])
        for name, (flags, other) in results.items():
            precision, recall, f1 = scores(flags, flipped)
            agree = jaccard(flags, other) if other is not None else float("nan")
            rows.setdefault(name, []).append((flags.size, precision, recall, f1, agree))
        rows.setdefault("_oof", []).append(oof_accuracy)

    n_labels, n_flipped = sizes[0]
    print(
        f"BANKING77 train, {n_labels:,} labels ({'all' if args.n <= 0 else 'stratified subset'}), 77 classes, "
        f"{args.noise:.0%} flipped at random ({n_flipped:,}); MiniLM-L6-v2 vectors; {finder.n_splits_}-fold "
        f"logistic heads ({hyper}); seeds {seeds}; torch threads {torch.get_num_threads()}"
    )
    print(f"out-of-fold accuracy against the true labels: {np.mean(rows.pop('_oof')):.3f}")
    print(f"recall bound at the cap: {min(cap, n_flipped) / n_flipped:.3f}\n")
    header = f"{'method':<38} {'flags':>7} {'precision':>10} {'recall':>8} {'F1':>7} {'agree w/ peer':>14}"
    print(header)
    print("-" * len(header))
    for name, values in rows.items():
        v = np.array(values, dtype=np.float64)
        mean, sd = v[:, :4].mean(axis=0), v[:, :4].std(axis=0)
        agree = "" if np.isnan(v[:, 4]).all() else f"{np.nanmean(v[:, 4]):.3f}"
        print(f"{name:<38} {mean[0]:>7.1f} {mean[1]:>6.3f}±{sd[1]:.3f} {mean[2]:>8.3f} {mean[3]:>7.3f} {agree:>14}")
    print("\n(mean ± sd over seeds; 'agree' = Jaccard overlap of the cleanlab row's flags with Quorum's)")
    print("\nseconds per seed (mean):")
    for name, values in timing.items():
        if values:
            print(f"  {name:<30} {np.mean(values):8.2f}")


if __name__ == "__main__":
    main()
