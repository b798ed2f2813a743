#!/usr/bin/env python
"""Multi-label aggregation: BinaryRelevanceDawidSkene against majority vote and HDS per tag.

Tables printed:

1. simulated annotators on GoEmotions' real tag sets (``../shared/datasets/goemotions/train.csv``,
   28 emotions, 1.18 tags per comment): each item gets 3 answers from a pool of 60 annotators of
   uneven activity. Regular annotators drop each true tag with their own miss rate (0.05-0.40),
   miss two tags of their own far more often (blind spots, 0.85), add wrong tags (Poisson, 0.05-0.5
   a answer, drawn by tag frequency) and over-use one pet tag (0.15 a answer); 4 spammers answer
   the tag set of a random other comment, 4 always answer ``neutral``. Methods: majority vote per
   tag (share > 0.5), ``HierarchicalDawidSkene`` fitted on each tag independently (present when
   its posterior > 0.5), and ``BinaryRelevanceDawidSkene``. Scores against the true sets: subset
   accuracy, macro-F1 over tags, Hamming loss, expected calibration error of the per-tag decisions
   (15 bins of max(p, 1 - p)), the share of items whose every tag is confident (``tag_confidence``
   >= 0.95: routed final) and the subset accuracy of those, and wall seconds of the fit. Mean over
   ``--seeds`` seeds (and their spread, min-max), at each of ``--sizes`` answers. Below each size,
   the agreement figures of the same answers: MASI alpha, the mean per-tag kappa and the mean of
   the pairwise MASI kappa heatmap, and the seconds all three took.
2. the binary real crowd sets in ``../shared/datasets/crowd`` (``d_sentiment``, ``ZenCrowd_all``;
   ``s4_Relevance`` read as relevant = grade > 0): accuracy on the gold items of majority vote,
   ``HierarchicalDawidSkene`` and ``BinaryRelevanceDawidSkene`` with L = 1, and seconds.

Nothing is tuned to these sets: every prior strength is chosen from the data by the models.

    python bench/multilabel_aggregation.py [--sizes 10000,100000] [--seeds 3] [--skip crowd]
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from annotation.aggregation_io import read_answers_csv, read_truth_csv  # noqa: E402
from annotation.dawid_skene import HierarchicalDawidSkene, MajorityVote  # noqa: E402
from annotation.tagsets import (  # noqa: E402
    BinaryRelevanceDawidSkene,
    krippendorff_alpha_sets,
    pairwise_set_agreement,
    per_label_kappa,
    tag_confidence,
    tag_vote_shares,
)

SHARED = ROOT.parent / "shared" / "datasets"
GOEMOTIONS = SHARED / "goemotions"
CROWD = SHARED / "crowd"
BINARY_SETS = {"d_sentiment": None, "ZenCrowd_all": None, "s4_Relevance": "grade > 0"}
PER_ITEM = 3
N_WORKERS = 60
FINAL_AT = 0.95


def read_goemotions() -> tuple[np.ndarray, list[str]]:
    """(n_comments, 28) 0/1 true tag sets of ``train.csv`` and the label names."""
    names = (GOEMOTIONS / "labels.txt").read_text().split()
    at = {name: j for j, name in enumerate(names)}
    with open(GOEMOTIONS / "train.csv", newline="", encoding="utf-8") as handle:
        rows = [row["labels"].split("|") for row in csv.DictReader(handle)]
    truth = np.zeros((len(rows), len(names)), dtype=np.int8)
    for i, tags in enumerate(rows):
        truth[i, [at[t] for t in tags]] = 1
    return truth, names


def simulate(pool: np.ndarray, n_answers: int, seed: int, neutral: int):
    """Answers of the annotator pool described in the module docstring on ``n_answers // 3`` comments."""
    rng = np.random.default_rng(seed)
    n_items = n_answers // PER_ITEM
    truth = pool[rng.choice(pool.shape[0], n_items, replace=False)]
    L = truth.shape[1]
    frequency = pool.mean(axis=0)
    kind = np.array(["regular"] * (N_WORKERS - 8) + ["random"] * 4 + ["neutral"] * 4)
    activity = rng.lognormal(0.0, 0.75, N_WORKERS)
    miss = np.repeat(rng.uniform(0.05, 0.40, N_WORKERS)[:, None], L, axis=1)
    for r in range(N_WORKERS):
        miss[r, rng.choice(L, 2, replace=False)] = 0.85  # blind spots
    add = rng.uniform(0.05, 0.5, N_WORKERS)
    pet = rng.integers(0, L, N_WORKERS)
    # 3 distinct annotators per item, drawn by activity (Gumbel top-k)
    keys = np.log(activity)[None, :] + rng.gumbel(size=(n_items, N_WORKERS))
    workers = np.argsort(-keys, axis=1)[:, :PER_ITEM].ravel()
    items = np.repeat(np.arange(n_items), PER_ITEM)
    true = truth[items].astype(bool)
    Y = true & (rng.random(true.shape) >= miss[workers])
    extra = rng.poisson(add[workers])
    for n in np.flatnonzero(extra):
        wrong = np.flatnonzero(~true[n])
        weights = frequency[wrong] / frequency[wrong].sum()
        Y[n, rng.choice(wrong, min(extra[n], wrong.size), replace=False, p=weights)] = True
    Y[np.arange(items.size), pet[workers]] |= rng.random(items.size) < 0.15
    spam = kind[workers] == "random"
    Y[spam] = pool[rng.integers(0, pool.shape[0], spam.sum())].astype(bool)
    lazy = kind[workers] == "neutral"
    Y[lazy] = False
    Y[lazy, neutral] = True
    return items, workers, Y.astype(np.int8), truth


def expected_calibration_error(confidence, correct, bins: int = 15) -> float:
    """ECE (Guo et al. 2017): bin-size-weighted mean |confidence - accuracy|, equal-width bins."""
    which = np.clip(np.digitize(confidence, np.linspace(0, 1, bins + 1)[1:-1]), 0, bins - 1)
    error = 0.0
    for b in np.unique(which):
        mask = which == b
        error += mask.mean() * abs(confidence[mask].mean() - correct[mask].mean())
    return float(error)


def scores(posteriors: np.ndarray, truth: np.ndarray, seconds: float) -> dict:
    predicted = (posteriors > 0.5).astype(np.int8)
    exact = (predicted == truth).all(axis=1)
    final = tag_confidence(posteriors) >= FINAL_AT
    confidence = np.maximum(posteriors, 1.0 - posteriors).ravel()
    return {
        "subset acc": exact.mean(),
        "macro-F1": f1_score(truth, predicted, average="macro", zero_division=0),
        "Hamming": (predicted != truth).mean(),
        "ECE": expected_calibration_error(confidence, (predicted == truth).ravel()),
        "final": final.mean(),
        "acc final": exact[final].mean() if final.any() else float("nan"),
        "s": seconds,
    }


def timed(fit, *args):
    start = time.perf_counter()
    result = fit(*args)
    return result, time.perf_counter() - start


def majority_vote(items, workers, Y, n_items: int) -> np.ndarray:
    return tag_vote_shares(items, Y, n_items=n_items)


def hds_per_tag(items, workers, Y, n_items: int) -> np.ndarray:
    out = np.empty((n_items, Y.shape[1]))
    for tag in range(Y.shape[1]):
        model = HierarchicalDawidSkene().fit(
            items, workers, Y[:, tag], n_items=n_items, n_workers=N_WORKERS, n_classes=2
        )
        out[:, tag] = model.posteriors_[:, 1]
    return out


def binary_relevance(items, workers, Y, n_items: int) -> np.ndarray:
    return BinaryRelevanceDawidSkene().fit(items, workers, Y, n_items=n_items, n_workers=N_WORKERS).posteriors_


#: Multi-label methods: (items, workers, Y, n_items) -> (n_items, L) P(tag present).
METHODS = {"majority vote": majority_vote, "HDS per tag": hds_per_tag, "BR-DS": binary_relevance}


def crowd_majority(items, workers, labels, counts) -> tuple[np.ndarray, str]:
    return MajorityVote().fit(items, workers, labels, **counts, n_classes=2).predict(), ""


def crowd_hds(items, workers, labels, counts) -> tuple[np.ndarray, str]:
    model = HierarchicalDawidSkene().fit(items, workers, labels, **counts, n_classes=2)
    return model.predict(), model.model_


def crowd_binary_relevance(items, workers, labels, counts) -> tuple[np.ndarray, str]:
    model = BinaryRelevanceDawidSkene().fit(items, workers, labels[:, None], **counts)
    return model.predict()[:, 0], model.model_


#: Binary crowd methods: (items, workers, labels, counts) -> (labels, the model kept).
CROWD_METHODS = {"majority vote": crowd_majority, "HDS": crowd_hds, "BR-DS (L=1)": crowd_binary_relevance}


def table(title: str, header: list[str], rows: list[list[str]], notes=()) -> None:
    cells = [header, *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for index, row in enumerate(cells):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if index == 0:
            print("  ".join("-" * w for w in widths))
    for note in notes:
        print(note)
    sys.stdout.flush()


def goemotions_table(sizes: list[int], seeds: int) -> None:
    pool, names = read_goemotions()
    neutral = names.index("neutral")
    columns = ["subset acc", "macro-F1", "Hamming", "ECE", "final", "acc final", "s"]
    rows = []
    for size in sizes:
        results: dict[str, list[dict]] = {"majority vote": [], "HDS per tag": [], "BR-DS": []}
        agreement = []
        for seed in range(seeds):
            items, workers, Y, truth = simulate(pool, size, seed, neutral)
            for name, fit in METHODS.items():
                posteriors, seconds = timed(fit, items, workers, Y, truth.shape[0])
                results[name].append(scores(posteriors, truth, seconds))
            start = time.perf_counter()
            alpha = krippendorff_alpha_sets(items, workers, Y)
            kappa = np.nanmean(per_label_kappa(items, workers, Y))
            pairs = pairwise_set_agreement(items, workers, Y)
            pair_mean = np.nanmean(pairs[~np.eye(N_WORKERS, dtype=bool)])
            agreement.append((alpha, kappa, pair_mean, time.perf_counter() - start))
        for name, runs in results.items():
            row = [f"{size:,} answers, {name}"]
            for c in columns:
                values = np.array([run[c] for run in runs])
                digits = 2 if c == "s" else 4
                spread = f" ({values.min():.{digits}f}-{values.max():.{digits}f})" if seeds > 1 and c != "s" else ""
                row.append(f"{values.mean():.{digits}f}{spread}")
            rows.append(row)
        alpha, kappa, pair_mean, seconds = np.mean(agreement, axis=0)
        words = f"MASI alpha {alpha:.3f}, per-tag kappa {kappa:.3f}, pair MASI kappa {pair_mean:.3f} ({seconds:.2f} s)"
        rows.append([f"{size:,} answers: {words}"] + [""] * len(columns))
    table(
        f"1. GoEmotions tag sets, {PER_ITEM} simulated answers per item, {N_WORKERS} annotators (8 spammers); "
        f"mean (min-max) over {seeds} seed(s)",
        ["data, method", *columns],
        rows,
        [
            f"final: share of items with tag_confidence >= {FINAL_AT}; acc final: subset accuracy of those;",
            "ECE over every (item, tag) decision; s: wall seconds of the fit (HDS per tag: 28 fits).",
        ],
    )


def crowd_table() -> None:
    rows = []
    for name, binarised in BINARY_SETS.items():
        folder = CROWD / name
        if not (folder / "answer.csv").exists():
            continue
        encoded, _ = read_answers_csv(folder / "answer.csv", item_col="0", worker_col="1", label_col="2")
        truth = read_truth_csv(folder / "truth.csv")
        label_names = encoded.label_names.tolist()
        positive = np.array([float(v) > 0 for v in label_names])
        labels = positive[encoded.labels].astype(np.int64)
        item_at = {item: i for i, item in enumerate(encoded.item_names.tolist())}
        gold = [(item_at[item], float(label) > 0) for item, label in truth.items() if item in item_at]
        gold_items, gold_labels = (np.array(column) for column in zip(*gold, strict=True))
        counts = {"n_items": len(encoded.item_names), "n_workers": len(encoded.worker_names)}
        row = [f"{name}" + (f" ({binarised})" if binarised else ""), f"{labels.size:,}"]
        for fit in CROWD_METHODS.values():
            (predicted, kept), seconds = timed(fit, encoded.items, encoded.workers, labels, counts)
            accuracy = np.mean(predicted[gold_items] == gold_labels)
            row.append(f"{accuracy:.4f} ({seconds:.2f} s{', ' + kept if kept else ''})")
        rows.append(row)
    if rows:
        table(
            "2. Binary real crowd sets: accuracy on gold (seconds, the model kept)",
            ["set", "answers", *CROWD_METHODS],
            rows,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="answers per simulated data set, comma-separated")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma-separated: goemotions, crowd")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if "goemotions" not in skip and (GOEMOTIONS / "train.csv").exists():
        goemotions_table([int(s) for s in args.sizes.split(",")], args.seeds)
    if "crowd" not in skip:
        crowd_table()


if __name__ == "__main__":
    main()
