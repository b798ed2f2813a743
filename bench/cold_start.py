#!/usr/bin/env python
"""Cold start on BANKING77 (and GoEmotions): which first batches cover the classes and train the best model.

Frozen all-MiniLM-L6-v2 embeddings (encoded once, cached as .npy under var/cache/). No seed labels: every
method starts from nothing and picks batches of 50 from the unlabelled pool, the true labels of each
batch arriving before the next is picked, up to 500 labels. Methods:

  random              uniform without replacement
  kcenter             ``strategies.cold_start(method="kcenter")`` (k-center greedy from a seeded first point),
                      then k-center greedy against the labelled set (``select_batch("coreset")``)
  probcover           ProbCover (Yehuda et al. 2022), here in the benchmark only: δ is the largest radius whose
                      balls stay 95% pure w.r.t. k-means with one cluster per class (the 5% quantile of each
                      point's distance to the nearest point of another cluster), then greedy max coverage of
                      the δ-ball graph (a sparse matrix; it needs the pool's pairs within δ, so it is run on
                      banking77's 10k pool only)
  typiclust           ``acquisition.coldstart.typical_diverse`` (TypiClust: k-means with |L| + 50 clusters,
                      the most typical point of each largest uncovered cluster)
  typiclust+zeroshot  the same with the zero-shot prior (``acquisition.zeroshot.ZeroShotPrior``: cosine to the
                      embedded label names, temperature from the pool's score spread, then fitted on the
                      labels so far): clusters and points weighted by 1 + t · P(a class not covered yet),
                      t the accuracy the prior expects of itself

Printed, mean ± std over seeds: classes covered after 1, 2 and 4 batches; test accuracy of the logistic head
(``bench/learning_curve.py``'s ``evaluation_model``: one logistic head, weight_decay 0.1) at 100, 200 and
500 labels when the method picks every batch; and at 200 / 500 labels when, as in the app, the cold start
stops once there are as many labels as classes and MSAL (α 0.01, the project default) picks the rest
with the model. Then the zero-shot prior itself on the test split: accuracy, mean confidence, NLL and
expected calibration error with κ₀ and with κ fitted on the first batch's labels.

GoEmotions (``--datasets banking77,goemotions``): the comments with exactly one of the 28 labels
(36,308 train, 4,590 test), as a single-label set. Nothing is tuned per dataset: every constant of the
methods is the paper's or the library's.

  python bench/cold_start.py [--datasets banking77,goemotions] [--seeds 0,1,2] [--batch 50] [--budget 500]
                             [--methods random,kcenter,typiclust,typiclust+zeroshot] [--threads 1] [--out f.json]
  python bench/cold_start.py --scale 1000000 [--threads 2]   # seconds of one batch on a synthetic 1M x 384 pool

A dataset whose folder is absent is skipped with a line saying so.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from banking77 import BANKING77_DIR, banking77_available, cached_embeddings, load_banking77  # noqa: E402
from learning_curve import evaluation_model  # noqa: E402

from acquisition import strategies  # noqa: E402
from acquisition.coldstart import TypicalClusters, typical_diverse  # noqa: E402
from acquisition.datasets import LabelledDataset, Split  # noqa: E402
from acquisition.encoders import get_encoder  # noqa: E402
from acquisition.zeroshot import ZeroShotPrior, label_text  # noqa: E402

GOEMOTIONS_DIR = ROOT.parent / "shared" / "datasets" / "goemotions"
ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
METHODS = ("random", "kcenter", "probcover", "typiclust", "typiclust+zeroshot")
COVERAGE_AFTER = (1, 2, 4)  # batches
ACCURACY_AT = (100, 200, 500)  # labels
MSAL_ALPHA = strategies.DEFAULT_MSAL_ALPHA


# ---------------------------------------------------------------------------------- data
def load_goemotions(path: Path = GOEMOTIONS_DIR) -> LabelledDataset:
    """The comments with exactly one label, as a single-label dataset (labels in ``labels.txt`` order)."""
    categories = [line.strip() for line in (path / "labels.txt").read_text(encoding="utf-8").splitlines() if line]
    index = {name: i for i, name in enumerate(categories)}

    def split(name: str) -> Split:
        with open(path / f"{name}.csv", newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.DictReader(handle) if "|" not in row["labels"]]
        return Split([row["text"] for row in rows], np.array([index[row["labels"].strip()] for row in rows]))

    return LabelledDataset("goemotions-single", split("train"), split("test"), categories)


def dataset(name: str) -> dict | None:
    if name == "banking77":
        if not banking77_available():
            print(f"banking77: {BANKING77_DIR} is absent, skipped")
            return None
        data = load_banking77()
    elif name == "goemotions":
        if not (GOEMOTIONS_DIR / "train.csv").is_file():
            print(f"goemotions: {GOEMOTIONS_DIR} is absent, skipped")
            return None
        data = load_goemotions()
    else:
        raise SystemExit(f"unknown dataset {name!r}")
    X, Xt = cached_embeddings(data, ENCODER)
    encoder = get_encoder(ENCODER)
    labels = encoder.encode([label_text(c) for c in data.categories])
    return {
        "name": name,
        "X": X,
        "y": np.asarray(data.train.labels, dtype=np.int64),
        "Xt": Xt,
        "yt": np.asarray(data.test.labels, dtype=np.int64),
        "C": len(data.categories),
        "labels": labels,
    }


# ---------------------------------------------------------------------------------- picking
def pick(method: str, k: int, data: dict, labelled: np.ndarray, seed: int, state: dict) -> np.ndarray:
    """``k`` pool positions not in ``labelled`` (bool mask), by ``method``."""
    X, y = data["X"], data["y"]
    cand = np.flatnonzero(~labelled)
    lab = np.flatnonzero(labelled)
    if method == "random":
        return np.random.default_rng(seed).choice(cand, size=k, replace=False)
    if method == "kcenter":
        if len(lab) == 0:
            return cand[strategies.cold_start(X[cand], k, seed=seed, method="kcenter")]
        dist = strategies.min_distances(X[cand], X[lab])
        return cand[strategies.select_batch("coreset", k, embeddings=X[cand], min_dist=dist, seed=seed).indices]
    if method == "probcover":
        return probcover(k, data, labelled, state, seed // 1000)
    if method == "typiclust":
        return cand[typical_diverse(X[cand], k, labelled=X[lab], seed=seed)]
    if method == "typiclust+zeroshot":
        prior = zero_shot(data, labelled)
        state["kappa"] = prior.kappa_
        return cand[typical_diverse(X[cand], k, labelled=X[lab], labelled_classes=y[lab], prior=prior, seed=seed)]
    raise SystemExit(f"unknown method {method!r}")


def probcover_graph(X: np.ndarray, n_classes: int, seed: int, alpha: float = 0.95, block: int = 2048):
    """ProbCover's δ-ball graph: δ from the purity of k-means clusters (one per class), and the sparse
    adjacency ``‖x − x'‖ < δ`` (row x: the points its ball covers)."""
    from scipy import sparse

    assign = TypicalClusters(n_classes, random_state=seed, sample_size=len(X)).fit(X).labels_
    x = torch.from_numpy(X)
    sq = x.square().sum(1)
    other = np.empty(len(X))
    for s in range(0, len(X), block):
        d = (sq[s : s + block, None] + sq[None, :] - 2 * x[s : s + block] @ x.T).clamp_(min=0).sqrt_()
        same = torch.from_numpy(assign[s : s + block, None] == assign[None, :])
        other[s : s + block] = d.masked_fill_(same, np.inf).min(1).values.numpy()
    delta = float(np.quantile(other, 1 - alpha))
    rows, cols = [], []
    for s in range(0, len(X), block):
        d = (sq[s : s + block, None] + sq[None, :] - 2 * x[s : s + block] @ x.T).clamp_(min=0).sqrt_()
        r, c = torch.nonzero(d < delta, as_tuple=True)
        rows.append(r.numpy() + s)
        cols.append(c.numpy())
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(X), len(X)))
    return graph, delta


def probcover(k: int, data: dict, labelled: np.ndarray, state: dict, seed: int) -> np.ndarray:
    """Greedy max coverage: each pick is the point whose δ-ball holds the most points not covered yet."""
    key = (data["name"], seed)
    if key not in _GRAPHS:
        _GRAPHS.clear()
        _GRAPHS[key] = probcover_graph(data["X"], data["C"], seed=seed)
    graph, state["delta"] = _GRAPHS[key]
    covered = (
        np.asarray(graph[np.flatnonzero(labelled)].sum(0)).ravel() > 0
        if labelled.any()
        else np.zeros(len(labelled), bool)
    )
    taken = labelled.copy()
    picks = []
    for _ in range(k):
        degree = graph @ (~covered).astype(np.float32)
        degree[taken] = -1
        best = int(np.argmax(degree))
        picks.append(best)
        taken[best] = True
        covered[graph[best].indices] = True
    return np.asarray(picks, dtype=np.int64)


_GRAPHS: dict = {}


def zero_shot(data: dict, labelled: np.ndarray) -> ZeroShotPrior:
    """The prior the app would use: κ₀ from the pool, then fitted on the labels so far."""
    y = np.where(labelled, data["y"], -1)
    return ZeroShotPrior(data["labels"]).fit(data["X"], y)


def msal(k: int, data: dict, labelled: np.ndarray, model, seed: int) -> np.ndarray:
    X = data["X"]
    cand = np.flatnonzero(~labelled)
    dist = strategies.min_distances(X[cand], X[labelled])
    probs = model.predict_proba_members(X[cand])
    chosen = strategies.select_batch(
        "msal", k, probs=probs, embeddings=X[cand], min_dist=dist, alpha=MSAL_ALPHA, seed=seed
    ).indices
    return cand[chosen]


# ---------------------------------------------------------------------------------- runs
def run_one(method: str, seed: int, data: dict, batch: int, budget: int) -> dict:
    """One seed of one method picking every batch: coverage per batch, accuracy at the checkpoints, and
    the pick order (the app's runs below start from its first batches)."""
    y, C = data["y"], data["C"]
    labelled = np.zeros(len(y), dtype=bool)
    model = evaluation_model(seed)
    coverage, accuracy, state, order = {}, {}, {}, []
    select_s = 0.0
    for r in range(math.ceil(budget / batch)):
        k = min(batch, budget - int(labelled.sum()))
        started = time.perf_counter()
        new = pick(method, k, data, labelled, seed * 1000 + r, state)
        select_s += time.perf_counter() - started
        assert len(new) == k and not labelled[new].any()
        labelled[new] = True
        order.extend(new.tolist())
        if r + 1 in COVERAGE_AFTER:
            coverage[r + 1] = int(len(np.unique(y[labelled])))
        if len(order) in ACCURACY_AT:
            idx = np.asarray(order)
            model.fit(data["X"][idx], y[idx], n_classes=C)
            accuracy[len(order)] = float(np.mean(model.predict(data["Xt"]) == data["yt"]))
    return {
        "method": method,
        "seed": seed,
        "coverage": coverage,
        "accuracy": accuracy,
        "select_s": select_s,
        "order": order,
    }


def run_then_msal(pure: dict, data: dict, batch: int, budget: int) -> dict:
    """The app's course: the method's batches while there are fewer labels than classes, then MSAL with the
    model trained after every batch."""
    y, C = data["y"], data["C"]
    switch = next(n for n in range(0, budget + batch, batch) if n >= C)
    order = list(pure["order"][:switch])
    labelled = np.zeros(len(y), dtype=bool)
    labelled[order] = True
    model = evaluation_model(pure["seed"])
    accuracy = {}
    r = 0
    while True:
        idx = np.asarray(order)
        model.fit(data["X"][idx], y[idx], n_classes=C)
        if len(order) in ACCURACY_AT:
            accuracy[len(order)] = float(np.mean(model.predict(data["Xt"]) == data["yt"]))
        if len(order) >= budget:
            break
        new = msal(min(batch, budget - len(order)), data, labelled, model, pure["seed"] * 1000 + 500 + r)
        labelled[new] = True
        order.extend(new.tolist())
        r += 1
    return {"method": pure["method"], "seed": pure["seed"], "accuracy": accuracy}


def zero_shot_quality(data: dict, batch: int) -> list[str]:
    """Accuracy and calibration of the prior on the test split: κ₀, and κ fitted on one random batch."""
    Xt, yt = data["Xt"], data["yt"]
    lines = []
    for what, labelled in (
        ("κ₀ (no label)", np.zeros(len(data["y"]), bool)),
        (f"κ fitted on {batch} random labels", _random_mask(len(data["y"]), batch)),
        ("κ fitted on every pool label", np.ones(len(data["y"]), bool)),
    ):
        prior = zero_shot(data, labelled)
        p = prior.predict_proba(Xt)
        nll = float(-np.log(p[np.arange(len(yt)), yt] + 1e-12).mean())
        acc = float(np.mean(p.argmax(1) == yt))
        lines.append(
            f"  {what:<34} κ={prior.kappa_:6.1f}  accuracy {acc:.3f}  mean confidence {p.max(1).mean():.3f}  "
            f"NLL {nll:.3f}  ECE {_ece(p, yt):.3f}"
        )
    return lines


def _random_mask(n: int, k: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(0).choice(n, size=k, replace=False)] = True
    return mask


def _ece(p: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    conf, right = p.max(1), p.argmax(1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(right[m].mean() - conf[m].mean())
    return float(total)


def _cell(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def table(name: str, C: int, pure: dict[str, list[dict]], app: dict[str, list[dict]]) -> str:
    head = (
        [f"classes after {b} batch{'es' if b > 1 else ''} (of {C})" for b in COVERAGE_AFTER]
        + [f"acc @{n}" for n in ACCURACY_AT]
        + [f"then msal: acc @{n}" for n in ACCURACY_AT[1:]]
        + ["select s/run"]
    )
    rows = [f"| {name} method | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for method, runs in pure.items():
        cells = [_cell([r["coverage"][b] for r in runs if b in r["coverage"]], 1) for b in COVERAGE_AFTER]
        cells += [_cell([r["accuracy"][n] for r in runs if n in r["accuracy"]], 3) for n in ACCURACY_AT]
        cells += [
            _cell([r["accuracy"][n] for r in app.get(method, []) if n in r["accuracy"]], 3) for n in ACCURACY_AT[1:]
        ]
        cells.append(f"{np.mean([r['select_s'] for r in runs]):.1f}")
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def scale(n: int, dim: int = 384, k: int = 50, n_labelled: int = 100, n_classes: int = 150) -> None:
    """Seconds of one cold-start batch on a synthetic ``n × dim`` pool (unit-norm points around 1,000 topics):
    TypiClust alone and with a prior of ``n_classes`` random label vectors, ``n_labelled`` labelled points."""
    rng = np.random.default_rng(0)
    topics = rng.normal(size=(1000, dim)).astype(np.float32)
    X = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        block = topics[rng.integers(0, 1000, m)] + rng.normal(scale=0.7, size=(m, dim)).astype(np.float32)
        X[s : s + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    labelled = X[:n_labelled].copy()
    prior = ZeroShotPrior(rng.normal(size=(n_classes, dim))).fit(X[rng.choice(n, 20_000, replace=False)])
    for name, kwargs in (("typiclust", {}), ("typiclust+zeroshot", {"prior": prior})):
        started = time.perf_counter()
        picks = typical_diverse(X, k, labelled=labelled, seed=0, **kwargs)
        print(f"{name}: {n:,} x {dim}, {n_labelled} labelled, batch {k}: {time.perf_counter() - started:.1f} s")
        assert len(set(picks.tolist())) == k


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="banking77")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--budget", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-msal", action="store_true", help="skip the cold start + MSAL runs")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--scale", type=int, default=0, help="only time one batch on a synthetic pool of N rows")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.scale:
        scale(args.scale)
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    results = {}
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        data = dataset(name)
        if data is None:
            continue
        print(f"{name}: pool {len(data['y']):,}, test {len(data['yt']):,}, {data['C']} classes", flush=True)
        pure: dict[str, list[dict]] = {}
        app: dict[str, list[dict]] = {}
        for method in methods:
            if method == "probcover" and len(data["y"]) > 20_000:
                print(f"  probcover skipped: its δ-ball graph of {len(data['y']):,} points is too large here")
                continue
            for seed in seeds:
                started = time.perf_counter()
                run = run_one(method, seed, data, args.batch, args.budget)
                pure.setdefault(method, []).append(run)
                if not args.no_msal:
                    app.setdefault(method, []).append(run_then_msal(run, data, args.batch, args.budget))
                print(f"  {method} seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
        print()
        print(table(name, data["C"], pure, app))
        print()
        print(f"{name}: the zero-shot prior on the test split (label names only, {ENCODER})")
        print("\n".join(zero_shot_quality(data, args.batch)))
        print(flush=True)
        results[name] = {"pure": pure, "then_msal": app}
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
