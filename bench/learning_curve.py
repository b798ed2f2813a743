#!/usr/bin/env python
"""Learning curves of every acquisition strategy on BANKING77 (pool = train, evaluation = test).

Frozen all-MiniLM-L6-v2 embeddings (encoded once, cached as .npy under var/cache/), 77 seed labels
(one per class, seeded), then rounds of: train -> score the unlabelled pool -> select a batch of 50 with
``acquisition.strategies.select_batch`` -> add the true labels, up to the label budget (2,000). A batch
is cut short where needed so that every checkpoint (200 / 500 / 1000 / 2000 labels) is measured exactly.

Models (all ``acquisition.committee.HeadCommittee``, the code the app trains):

  evaluation + single-model strategies  one multinomial logistic head, no bootstrap, weight_decay 0.1
                                        (= scikit-learn LogisticRegression C=10); it is the model
                                        every strategy is evaluated with, and the one that scores
                                        least_confidence / margin / entropy / msal
  qbc                                   5 logistic heads on bootstrap resamples (50 L-BFGS
                                        iterations each fit), vote entropy, ties broken by the
                                        committee margin
  bald                                  an MLP head (hidden 256, dropout) with MC dropout: 20 masks
                                        give the posterior samples of H[p̄] − mean H[p_m]

Semi-supervised lines (``random+ssl``, ``margin+ssl``, ``msal+ssl``; any single-model strategy takes the
suffix): the model is ``acquisition.semisupervised.LabelSpreadingHead``, the head the app trains — label
spreading over the k-nearest-neighbour graph of the whole pool (built once, 20 neighbours per item; each
round keeps the same graph with the round's labels), its choices (k, α, mixing) made by cross-validation
on the round's labels, distilled into one logistic head. That head scores the pool (margin / MSAL) and is
evaluated, as in the app. The target stays random's accuracy with the plain supervised head.

Peer lines (``--peers``): modAL's margin sampling (``ActiveLearner`` + ``margin_sampling``) and small-text's
breaking ties (``PoolBasedActiveLearner`` + ``BreakingTies``), each library's own loop with scikit-learn's
``LogisticRegression(C=10)`` (the same objective as the logistic head) on the same embeddings, seed labels
and batch sizes, run in their own virtualenv (``bench/peers/al_curves.py``; the venv of
``bench/peers/al_queries.py``, created on first use).

QBC is evaluated with the single logistic head, as the app serves it: the committee only ranks the pool.

Every fit after the first starts from the previous round's weights (``HeadCommittee(warm_start=True)``),
which is what makes a round cheap. MSAL is the greedy ``margin + α · min distance to the labelled set``
of select_batch; the min-distance cache is updated with only the newly labelled rows each round. α is
small (0.01) because the two terms live on different scales here: the C=10 logistic model is confident,
so the top few hundred margins of the pool lie within ~0.005 of 0, while min distances between unit-norm
MiniLM vectors spread over ~0.4–1.0; α = 0.01 makes the distance term a within-batch tie-breaker among
the most uncertain items (α ≥ 0.05 lets distance dominate and falls behind plain margin early on).

Printed: test accuracy and macro-F1 at the checkpoints (mean ± std over seeds) per line, the labels each
line needs for its seed-mean accuracy to reach random's seed-mean accuracy at the budget (plain head),
the checkpoints where a line falls below random, and where random with the semi-supervised head ends.

  python bench/learning_curve.py [--strategies random,margin,msal,margin+ssl,...] [--seeds 0,1,2]
                                 [--budget 2000] [--batch 50] [--msal-alpha 0.01] [--threads 1]
                                 [--peers modal_margin,smalltext_breaking | --peers ''] [--out results.json]

With ../shared/datasets/banking77 absent it prints why and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from banking77 import BANKING77_DIR, banking77_available, cached_embeddings, load_banking77  # noqa: E402

from acquisition.committee import HeadCommittee  # noqa: E402
from acquisition.semisupervised import LabelSpreadingHead, knn_graph  # noqa: E402
from acquisition.strategies import STRATEGIES, min_distances, select_batch, update_min_distances  # noqa: E402

CHECKPOINTS = (200, 500, 1000, 2000)
SINGLE_MODEL = ("least_confidence", "margin", "entropy")
SSL = "+ssl"  # suffix of a semi-supervised line
SSL_BASES = ("random", "least_confidence", "margin", "entropy", "msal", "qbc", "bald")
DEFAULT_LINES = (*STRATEGIES, "random+ssl", "margin+ssl", "msal+ssl")
PEER_LINES = {"modal_margin": "modAL margin", "smalltext_breaking": "small-text breaking ties"}


# ---------------------------------------------------------------------------------- models
# Every model is refitted each round on the labels so far plus a new batch; ``warm_start=True`` starts each
# refit from the previous round's weights. ``tol=1e-5``: L-BFGS gradient tolerance of the logistic heads.
def evaluation_model(seed: int) -> HeadCommittee:
    return HeadCommittee(
        n_members=1, bootstrap=False, weight_decay=0.1, epochs=200, random_state=seed, tol=1e-5, warm_start=True
    )


def ssl_model(seed: int) -> LabelSpreadingHead:
    """The app's semi-supervised head (its default grids; ``tol`` as the evaluation model's)."""
    return LabelSpreadingHead(random_state=seed, tol=1e-5, epochs=200, warm_start=True)


def qbc_committee(seed: int, args) -> HeadCommittee:
    return HeadCommittee(
        n_members=args.qbc_members,
        bootstrap=True,
        weight_decay=0.1,
        epochs=args.qbc_epochs,
        random_state=seed,
        tol=1e-5,
        warm_start=True,
    )


def bald_committee(seed: int, args) -> HeadCommittee:
    """MC-dropout MLP head; ``args.bald_epochs`` Adam steps on the first fit (``run_one`` lowers ``epochs`` to
    ``args.bald_warm_epochs`` for the warm fits after it)."""
    return HeadCommittee(
        n_members=1,
        hidden=args.bald_hidden,
        dropout=args.bald_dropout,
        mc_dropout=True,
        mc_samples=args.bald_samples,
        weight_decay=args.bald_weight_decay,
        epochs=args.bald_epochs,
        bootstrap=False,
        random_state=seed,
        warm_start=True,
    )


# ---------------------------------------------------------------------------------- metrics
def accuracy_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> tuple[float, float]:
    """Accuracy and macro-F1 over all ``n_classes`` (a class never predicted and absent counts as F1 0)."""
    acc = float(np.mean(y_true == y_pred))
    tp = np.bincount(y_true[y_true == y_pred], minlength=n_classes).astype(np.float64)
    pred = np.bincount(y_pred, minlength=n_classes).astype(np.float64)
    true = np.bincount(y_true, minlength=n_classes).astype(np.float64)
    denom = pred + true
    f1 = np.divide(2 * tp, denom, out=np.zeros(n_classes), where=denom > 0)
    return acc, float(f1.mean())


def schedule(start: int, budget: int, batch: int, checkpoints=CHECKPOINTS) -> list[int]:
    """Label counts at which the model is trained and evaluated: +batch each round, cut at checkpoints."""
    marks = sorted({c for c in checkpoints if start < c <= budget} | {budget})
    sizes = [start]
    while sizes[-1] < budget:
        n = sizes[-1]
        nxt = next(c for c in marks if c > n)
        sizes.append(min(n + batch, nxt))
    return sizes


# ---------------------------------------------------------------------------------- one run
def run_one(line: str, seed: int, data: dict, args) -> dict:
    X, y, Xt, yt, C = data["X"], data["y"], data["Xt"], data["yt"], data["n_classes"]
    semi = line.endswith(SSL)
    strategy = line.removesuffix(SSL)
    n_pool = len(X)
    seed_idx = seed_labels(y, C, seed)
    labelled = np.zeros(n_pool, dtype=bool)
    labelled[seed_idx] = True
    order = list(seed_idx)
    sizes = schedule(len(seed_idx), args.budget, args.batch)

    model = ssl_model(seed) if semi else evaluation_model(seed)
    committee = None
    if strategy == "qbc":
        committee = qbc_committee(seed, args)
    elif strategy == "bald":
        committee = bald_committee(seed, args)
    min_dist = min_distances(X, X[seed_idx]) if strategy in ("msal", "coreset") else None

    curve: list[dict] = []
    t_fit = t_score = t_select = 0.0
    start = time.perf_counter()
    for round_no, n in enumerate(sizes):
        assert labelled.sum() == n
        idx = np.asarray(order, dtype=np.int64)
        t0 = time.perf_counter()
        if semi:  # the pool's graph, nodes reordered: this round's labelled items first
            rest = np.flatnonzero(~labelled)
            graph = data["graph"].subset(np.concatenate([idx, rest]))
            model.fit(X[idx], y[idx], X_unlabelled=X[rest], n_classes=C, graph=graph)
        else:
            model.fit(X[idx], y[idx], n_classes=C)
        pred = model.predict(Xt)
        acc, f1 = accuracy_f1(yt, pred, C)
        curve.append({"labels": int(n), "accuracy": acc, "macro_f1": f1})
        if semi:
            curve[-1]["chosen"] = [model.n_neighbors_, model.alpha_, model.mixing_]
        t_fit += time.perf_counter() - t0
        if round_no == len(sizes) - 1:
            break
        k = sizes[round_no + 1] - n
        cand = np.flatnonzero(~labelled)
        t0 = time.perf_counter()
        kwargs: dict = {}
        if strategy == "random":
            kwargs = {"scores": torch.zeros(len(cand))}
        elif strategy in SINGLE_MODEL:
            kwargs = {"probs": model.predict_proba_members(X[cand])}
        elif strategy in ("qbc", "bald"):
            committee.fit(X[idx], y[idx], n_classes=C)
            if strategy == "bald":  # the fits after the first start from the previous weights
                committee.set_params(epochs=args.bald_warm_epochs or args.bald_epochs)
            kwargs = {"probs": committee.predict_proba_members(X[cand])}
        elif strategy == "msal":
            kwargs = {
                "probs": model.predict_proba_members(X[cand]),
                "embeddings": X[cand],
                "min_dist": min_dist[cand],
                "uncertainty": args.msal_uncertainty,
                "alpha": args.msal_alpha,
            }
        elif strategy == "coreset":
            kwargs = {"embeddings": X[cand], "min_dist": min_dist[cand]}
        t1 = time.perf_counter()
        picked = select_batch(strategy, k, seed=seed * 100_003 + round_no, **kwargs).indices
        t_select += time.perf_counter() - t1
        t_score += t1 - t0
        new = cand[picked]
        assert len(new) == k and not labelled[new].any()
        labelled[new] = True
        order.extend(new.tolist())
        if min_dist is not None:
            min_dist = update_min_distances(min_dist, X, X[new])
    return {
        "strategy": line,
        "seed": seed,
        "curve": curve,
        "seconds": time.perf_counter() - start,
        "seconds_fit_eval": t_fit,
        "seconds_score": t_score,
        "seconds_select": t_select,
    }


# ---------------------------------------------------------------------------------- summary
def mean_curve(runs: list[dict], key: str = "accuracy") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = np.array([p["labels"] for p in runs[0]["curve"]])
    values = np.array([[p[key] for p in r["curve"]] for r in runs])
    return labels, values.mean(0), values.std(0)


def labels_to_reach(runs: list[dict], target: float) -> int | None:
    labels, mean, _ = mean_curve(runs)
    hit = np.flatnonzero(mean >= target - 1e-12)
    return int(labels[hit[0]]) if len(hit) else None


def summarise(results: dict[str, list[dict]], budget: int) -> str:
    checkpoints = [c for c in CHECKPOINTS if c <= budget]
    if budget not in checkpoints:
        checkpoints.append(budget)
    width = max([17, *(len(name) + 2 for name in results)])
    lines = []
    head = f"{'line':<{width}}" + "".join(f"{f'@{c}':>16}" for c in checkpoints)
    for key, title in (("accuracy", "test accuracy"), ("macro_f1", "test macro-F1")):
        lines.append(f"{title} (mean ± std over seeds)")
        lines.append(head)
        for strategy, runs in results.items():
            labels, mean, std = mean_curve(runs, key)
            cells = []
            for c in checkpoints:
                j = int(np.flatnonzero(labels == c)[0])
                cells.append(f"{mean[j]:.4f} ± {std[j]:.4f}")
            lines.append(f"{strategy:<{width}}" + "".join(f"{cell:>16}" for cell in cells))
        lines.append("")
    if "random" in results:
        r_labels, r_mean, _ = mean_curve(results["random"])
        target = float(r_mean[r_labels == budget][0])
        lines.append(
            f"labels needed to reach random@{budget} accuracy with the plain head ({target:.4f}), seed-mean curves;"
        )
        lines.append("and the checkpoints where a line's seed-mean accuracy is below random's (plain head):")
        for strategy, runs in results.items():
            need = labels_to_reach(runs, target)
            labels, m, _ = mean_curve(runs)
            txt = f"{need:,}" if need is not None else f"not reached (best {m.max():.4f})"
            below = [
                int(c)
                for c in labels
                if c in r_labels and m[labels == c][0] < r_mean[r_labels == c][0] - 1e-12 and strategy != "random"
            ]
            marks = [c for c in below if c in checkpoints]
            worse = (
                f"below random at {', '.join(f'@{c}' for c in marks)}"
                if marks
                else "never below random at a checkpoint"
            )
            lines.append(f"  {strategy:<{width}}{txt:>28}   {worse}")
        if f"random{SSL}" in results:
            labels, m, _ = mean_curve(results[f"random{SSL}"])
            lines.append(
                f"  random with the semi-supervised head ends at {m[-1]:.4f} @{int(labels[-1]):,} "
                f"(random with the plain head: {r_mean[-1]:.4f})"
            )
        lines.append("")
    lines.append("seconds per run (mean over seeds): total / fit+evaluate / score / select")
    for strategy, runs in results.items():
        t = [
            np.mean([r.get(k, 0.0) for r in runs])
            for k in ("seconds", "seconds_fit_eval", "seconds_score", "seconds_select")
        ]
        lines.append(f"  {strategy:<{width}}{t[0]:8.1f} {t[1]:8.1f} {t[2]:8.1f} {t[3]:8.1f}")
    chosen = {name: runs for name, runs in results.items() if "chosen" in runs[0]["curve"][-1]}
    if chosen:
        lines.append("")
        lines.append("semi-supervised choices (k, alpha, mixing) at the checkpoints, seed 0:")
        for name, runs in chosen.items():
            at = {p["labels"]: p["chosen"] for p in runs[0]["curve"]}
            cells = "  ".join(f"@{c} {tuple(at[c])}" for c in checkpoints if c in at)
            lines.append(f"  {name:<{width}}{cells}")
    return "\n".join(lines)


def run_peers(names: list[str], seeds: list[int], data: dict, args) -> dict[str, list[dict]]:
    """The peer lines, each seed in its own process in the peer virtualenv (``bench/peers/al_curves.py``)."""
    import subprocess
    import tempfile

    from peers import al_queries

    python = al_queries.ensure_venv()
    out: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="quorum-peer-curves-") as scratch:
        folder = Path(scratch)
        for key in ("X", "y", "Xt", "yt"):
            np.save(folder / f"{key}.npy", data[key])
        np.save(folder / "sizes.npy", np.asarray(schedule(data["n_classes"], args.budget, args.batch)))
        for name in names:
            for seed in seeds:
                np.save(folder / "seed.npy", seed_labels(data["y"], data["n_classes"], seed))
                result = folder / f"{name}-{seed}.json"
                command = [str(python), str(Path(__file__).resolve().parent / "peers" / "al_curves.py")]
                command += ["--data", str(folder), "--line", name, "--out", str(result)]
                env = {**__import__("os").environ, "OMP_NUM_THREADS": str(max(1, args.threads))}
                done = subprocess.run(command, capture_output=True, text=True, env=env)
                if done.returncode != 0:
                    print(f"  peer {name} seed {seed} failed:\n{done.stderr[-2000:]}")
                    break
                run = json.loads(result.read_text())
                run.update(strategy=PEER_LINES[name], seed=seed)
                out.setdefault(PEER_LINES[name], []).append(run)
                print(f"  {PEER_LINES[name]:<24} seed {seed}: {_marks(run)}  ({run['seconds']:.0f} s)")
                sys.stdout.flush()
    return out


def merge(paths: list[Path]) -> int:
    """Print the summary of several ``--out`` files (the same budget) as one run."""
    results: dict[str, list[dict]] = {}
    budgets = set()
    for path in paths:
        payload = json.loads(Path(path).read_text())
        budgets.add(payload["budget"])
        for name, runs in payload["runs"].items():
            results.setdefault(name, []).extend(runs)
    if len(budgets) != 1:
        raise SystemExit(f"the files have different budgets: {sorted(budgets)}")
    for name, runs in results.items():
        print(f"  {name:<24} seeds {[r['seed'] for r in runs]}")
    print()
    print(summarise(results, budgets.pop()))
    return 0


def seed_labels(y: np.ndarray, n_classes: int, seed: int) -> np.ndarray:
    """One seed label per class, drawn with ``seed`` (the same rows for every line)."""
    rng = np.random.default_rng(seed)
    return np.array([rng.choice(np.flatnonzero(y == c)) for c in range(n_classes)], dtype=np.int64)


def _marks(run: dict) -> str:
    at = {p["labels"]: p["accuracy"] for p in run["curve"]}
    return "  ".join(f"@{c} {at[c]:.4f}" for c in CHECKPOINTS if c in at) + f"  acc {run['curve'][-1]['accuracy']:.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--strategies",
        default=",".join(DEFAULT_LINES),
        help="comma-separated strategies, a single-model one with the suffix +ssl for the semi-supervised head "
        f"(default: {','.join(DEFAULT_LINES)})",
    )
    parser.add_argument(
        "--peers",
        default=",".join(PEER_LINES),
        help=f"comma-separated peer lines, '' for none (default: {','.join(PEER_LINES)})",
    )
    parser.add_argument("--graph-neighbours", type=int, default=20, help="neighbours per pool item in the graph")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--budget", type=int, default=2000, help="label budget (default 2000)")
    parser.add_argument("--batch", type=int, default=50, help="labels per round (default 50)")
    parser.add_argument("--msal-alpha", type=float, default=0.01, help="MSAL distance weight α (default 0.01)")
    parser.add_argument("--msal-uncertainty", default="margin", choices=("margin", "entropy", "least_confidence"))
    parser.add_argument("--qbc-members", type=int, default=5)
    parser.add_argument("--qbc-epochs", type=int, default=50, help="L-BFGS iterations per QBC fit (default 50)")
    parser.add_argument("--bald-hidden", type=int, default=256)
    parser.add_argument("--bald-dropout", type=float, default=0.3)
    parser.add_argument("--bald-samples", type=int, default=20)
    parser.add_argument("--bald-weight-decay", type=float, default=0.1)
    parser.add_argument("--bald-epochs", type=int, default=300, help="Adam steps of the first BALD fit")
    parser.add_argument("--bald-warm-epochs", type=int, default=60, help="Adam steps of every later BALD fit")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the per-round tensors are small, and on a shared machine "
        "a second OpenMP thread mostly waits)",
    )
    parser.add_argument("--data", type=Path, default=BANKING77_DIR, help="BANKING77 folder")
    parser.add_argument("--encoder", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--device", default="auto", help="device for encoding the texts (the loop runs on CPU)")
    parser.add_argument("--out", type=Path, default=None, help="write every curve and timing as JSON here")
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="print the summary of these --out files together (e.g. one run per seed, run side by side), "
        "seeds in the order given; runs nothing",
    )
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge)

    if not banking77_available(args.data):
        print(f"BANKING77 not found under {args.data} (train.csv, test.csv): learning-curve benchmark skipped.")
        return 0
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    known = set(STRATEGIES) | {f"{base}{SSL}" for base in SSL_BASES}
    unknown = sorted(set(strategies) - known)
    if unknown:
        parser.error(f"unknown strategies {unknown}; choose from {', '.join(sorted(known))}")
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    if sorted(set(peers) - set(PEER_LINES)):
        parser.error(f"unknown peers {sorted(set(peers) - set(PEER_LINES))}; choose from {', '.join(PEER_LINES)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    torch.set_num_threads(max(1, args.threads))

    data_set = load_banking77(args.data)
    X, Xt = cached_embeddings(data_set, args.encoder, args.device)
    n_classes = len(data_set.categories)
    data = {"X": X, "y": data_set.train.labels, "Xt": Xt, "yt": data_set.test.labels, "n_classes": n_classes}
    if args.budget <= n_classes or args.budget > len(X):
        parser.error(f"--budget must be in ({n_classes}, {len(X)}]")
    sizes = schedule(n_classes, args.budget, args.batch)
    print(
        f"BANKING77: pool {len(X):,}, test {len(Xt):,}, {n_classes} classes; embeddings {X.shape[1]}-d ({args.encoder})"
    )
    print(
        f"{n_classes} seed labels, batches of {args.batch}, budget {args.budget:,} ({len(sizes) - 1} rounds), "
        f"seeds {seeds}, torch threads {torch.get_num_threads()}; MSAL U={args.msal_uncertainty} α={args.msal_alpha}"
    )
    started = time.perf_counter()
    if any(s.endswith(SSL) for s in strategies):
        t = time.perf_counter()
        data["graph"] = knn_graph(X, args.graph_neighbours)
        print(
            f"pool graph: {args.graph_neighbours} nearest neighbours of {len(X):,} items in {time.perf_counter() - t:.1f} s"
        )
    print()

    results: dict[str, list[dict]] = {}

    def write(elapsed: float) -> None:
        if not args.out:
            return
        payload = {
            "dataset": str(args.data),
            "encoder": args.encoder,
            "budget": args.budget,
            "batch": args.batch,
            "seeds": seeds,
            "msal": {"alpha": args.msal_alpha, "uncertainty": args.msal_uncertainty},
            "qbc": {"members": args.qbc_members, "epochs": args.qbc_epochs},
            "bald": {
                "hidden": args.bald_hidden,
                "dropout": args.bald_dropout,
                "samples": args.bald_samples,
                "epochs": args.bald_epochs,
                "warm_epochs": args.bald_warm_epochs,
            },
            "peers": peers,
            "seconds": elapsed,
            "runs": results,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=1))

    # seed by seed, so every line has the same seeds done when a long run is cut short (the JSON is
    # rewritten after every run)
    for seed in seeds:
        for strategy in strategies:
            run = run_one(strategy, seed, data, args)
            results.setdefault(strategy, []).append(run)
            print(f"  {strategy:<17} seed {seed}: {_marks(run)}  ({run['seconds']:.0f} s)")
            sys.stdout.flush()
            write(time.perf_counter() - started)
        if peers:
            for name, runs in run_peers(peers, [seed], data, args).items():
                results.setdefault(name, []).extend(runs)
            write(time.perf_counter() - started)
    elapsed = time.perf_counter() - started
    print()
    print(summarise(results, args.budget))
    print(f"\ntotal {elapsed / 60:.1f} min on {torch.get_num_threads()} torch thread(s)")
    write(elapsed)
    if args.out:
        print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
