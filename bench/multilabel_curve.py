#!/usr/bin/env python
"""Learning curves of the multi-label acquisition strategies on GoEmotions (pool = train, evaluation = test).

GoEmotions (``../shared/datasets/goemotions``): 43,410 Reddit comments in the pool, 5,427 to test, 28
tags (27 emotions + neutral), 1.18 tags per comment, never an empty set. Frozen all-MiniLM-L6-v2
embeddings (encoded once, cached as .npy under ``var/cache/`` by ``acquisition.datasets``).

Seed set: for each tag, one pool row carrying it (drawn with the seed; a row drawn twice counts once),
so every tag has a positive example. Then rounds of: fit -> score the unlabelled pool -> select a batch
of 50 with ``acquisition.multilabel.select_batch_multilabel`` (10 % of it uniform exploration) -> add the
true tag sets, up to the budget (2,000). A batch is cut short where needed so that every checkpoint
(200 / 500 / 1000 / 1500 / 2000) is measured exactly.

Model (every line, and the evaluation): ``acquisition.multilabel.OneVsRestHead``, the head the app trains —
one sigmoid logistic output per tag (``weight_decay`` 0.1, the single-label head's), per-tag thresholds
maximising the expected F1 over the unlabelled pool (``--thresholds cv``: the cross-validated F1 of the
round's labels instead), ``allow_empty=False`` (the data has no empty set), warm started from the previous
round. Lines: ``random``, ``entropy`` (mean binary entropy), ``max_entropy``,
``mmc`` (Yang et al. 2009), ``margin`` (the cardinality margin), ``msal`` (cardinality margin + α · distance
to the labelled set, greedy in-batch, the single-label α) and ``coreset``.

Peer lines (``--peers``): small-text's ``CategoryVectorInconsistencyAndRanking`` and modAL's ``max_loss``,
``mean_max_loss``, ``avg_score``, each in its library's own loop with scikit-learn's one-vs-rest
``LogisticRegression(C=10)`` thresholded at 0.5 (and ``sklearn_random``: that model on uniform picks), run
in the peer virtualenv (``bench/peers/multilabel_curves.py``; the venv of ``bench/peers/al_queries.py``,
created on first use); same seed rows, batch sizes and test set, no exploration share (the libraries have
none). A peer line is printed twice: with its own model, and as Quorum's head refitted at the
checkpoints on the rows the peer picked (the same model as every Quorum line: a comparison of the picks).

Printed: test macro-F1 and micro-F1 at the checkpoints (mean ± std over seeds); the labels each line needs
for its seed-mean macro-F1 to reach random's seed-mean macro-F1 at the budget (the first round that reaches
it, and in brackets the linear interpolation between that round and the one before), and the checkpoints
where a line is below random; subset accuracy, Hamming loss and mean per-tag ECE at the budget; seconds.

  python bench/multilabel_curve.py [--strategies random,entropy,max_entropy,mmc,margin,msal,coreset]
                                   [--peers smalltext_cvirs,modal_max_loss,... | --peers '']
                                   [--seeds 0,1,2] [--budget 2000] [--batch 50] [--exploration 0.1]
                                   [--thresholds pool|cv] [--threads 1] [--out results.json]
                                   [--merge a.json b.json ...]

The full grid (7 lines, 5 peer lines, 3 seeds) took 74 minutes on 2 shared cores, 56 of them in
small-text's CVIRS (its query walks the pool in Python); ``--peers ''`` leaves the peers out (about
15 minutes).

With ../shared/datasets/goemotions absent it prints why and exits 0.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from acquisition.datasets import LabelledDataset, Split, dataset_embeddings  # noqa: E402
from acquisition.multilabel import (  # noqa: E402
    DEFAULT_MULTILABEL_STRATEGY,
    MULTILABEL_SCORES,
    MULTILABEL_STRATEGIES,
    OneVsRestHead,
    multilabel_metrics,
    select_batch_multilabel,
)
from acquisition.strategies import DEFAULT_MSAL_ALPHA, min_distances, update_min_distances  # noqa: E402

GOEMOTIONS_DIR = ROOT.parent / "shared" / "datasets" / "goemotions"
CHECKPOINTS = (200, 500, 1000, 1500, 2000)
DEFAULT_LINES = ("random", "entropy", "max_entropy", "mmc", "margin", "msal", "coreset")
PEER_LINES = {
    "smalltext_cvirs": "small-text CVIRS",
    "modal_max_loss": "modAL max_loss",
    "modal_mean_max_loss": "modAL mean_max_loss",
    "modal_avg_score": "modAL avg_score",
    "sklearn_random": "sklearn random",
}
ON_HEAD = " (head)"  # suffix of a peer line re-evaluated with Quorum's head


# ---------------------------------------------------------------------------------- data
def load_goemotions(path: Path = GOEMOTIONS_DIR) -> dict:
    """Texts and ``(n, 28)`` tag indicator arrays of train and test; tags in ``labels.txt`` order."""
    names = [line.strip() for line in (path / "labels.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    index = {name: j for j, name in enumerate(names)}
    out = {"labels": names}
    for split in ("train", "test"):
        with open(path / f"{split}.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        Y = np.zeros((len(rows), len(names)), dtype=np.uint8)
        for i, row in enumerate(rows):
            for tag in filter(None, (t.strip() for t in row["labels"].split("|"))):
                Y[i, index[tag]] = 1
        out[split] = ([row["text"] for row in rows], Y)
    return out


def embeddings(data: dict, encoder: str, device: str) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) MiniLM vectors through the benchmarks' cache (``acquisition.datasets``)."""
    split = {s: Split(data[s][0], np.zeros(len(data[s][0]), dtype=np.int64)) for s in ("train", "test")}
    ds = LabelledDataset("goemotions", split["train"], split["test"], data["labels"])
    return dataset_embeddings(ds, encoder, ROOT / "var" / "cache", device=device)


def seed_rows(Y: np.ndarray, seed: int) -> np.ndarray:
    """For each tag one pool row carrying it, drawn with ``seed`` (the same rows for every line)."""
    rng = np.random.default_rng(seed)
    rows = [int(rng.choice(np.flatnonzero(Y[:, j]))) for j in range(Y.shape[1]) if Y[:, j].any()]
    return np.asarray(list(dict.fromkeys(rows)), dtype=np.int64)


def schedule(start: int, budget: int, batch: int, checkpoints=CHECKPOINTS) -> list[int]:
    """Label counts at which the model is trained and evaluated: +batch each round, cut at checkpoints."""
    marks = sorted({c for c in checkpoints if start < c <= budget} | {budget})
    sizes = [start]
    while sizes[-1] < budget:
        nxt = next(c for c in marks if c > sizes[-1])
        sizes.append(min(sizes[-1] + batch, nxt))
    return sizes


def head(seed: int) -> OneVsRestHead:
    return OneVsRestHead(allow_empty=False, tol=1e-5, epochs=200, random_state=seed, warm_start=True)


def unlabelled(X: np.ndarray, labelled: np.ndarray, args) -> dict:
    """The head's ``X_unlabelled`` (the pool rows without a label) unless ``--thresholds cv``."""
    return {} if args.thresholds == "cv" else {"X_unlabelled": X[~labelled]}


def evaluate(model: OneVsRestHead, Xt: np.ndarray, Yt: np.ndarray, n: int) -> dict:
    m = multilabel_metrics(Yt, model.predict_proba(Xt), model.thresholds_, allow_empty=model.allow_empty)
    keys = ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss", "ece_mean")
    return {"labels": int(n), **{k: m[k] for k in keys}}


# ---------------------------------------------------------------------------------- one run
def run_one(strategy: str, seed: int, data: dict, args) -> dict:
    X, Y, Xt, Yt = data["X"], data["Y"], data["Xt"], data["Yt"]
    start_rows = seed_rows(Y, seed)
    labelled = np.zeros(len(X), dtype=bool)
    labelled[start_rows] = True
    order = list(start_rows)
    sizes = schedule(len(start_rows), args.budget, args.batch)
    model = head(seed)
    diverse = MULTILABEL_STRATEGIES[strategy] in ("msal", "coreset")
    min_dist = min_distances(X, X[start_rows]) if diverse else None
    curve = []
    t_fit = t_score = 0.0
    started = time.perf_counter()
    for round_no, n in enumerate(sizes):
        idx = np.asarray(order, dtype=np.int64)
        t0 = time.perf_counter()
        model.fit(X[idx], Y[idx], **unlabelled(X, labelled, args))
        curve.append(evaluate(model, Xt, Yt, n))
        t_fit += time.perf_counter() - t0
        if round_no == len(sizes) - 1:
            break
        t0 = time.perf_counter()
        cand = np.flatnonzero(~labelled)
        k = sizes[round_no + 1] - n
        name = MULTILABEL_STRATEGIES[strategy]
        kwargs: dict = {"exploration": args.exploration, "rng": seed * 100_003 + round_no}
        if name in MULTILABEL_SCORES:
            kwargs["scores"] = model.score(X[cand], strategy)
        elif name == "msal":
            kwargs.update(
                scores=model.score(X[cand], args.msal_uncertainty),
                embeddings=X[cand],
                min_dist=min_dist[cand],
                alpha=args.msal_alpha,
            )
        elif name == "coreset":
            kwargs.update(embeddings=X[cand], min_dist=min_dist[cand])
        else:
            kwargs["scores"] = np.zeros(len(cand))
        picked = select_batch_multilabel(strategy, None, k, **kwargs).indices
        new = cand[picked]
        assert len(new) == k and not labelled[new].any()
        labelled[new] = True
        order.extend(new.tolist())
        if min_dist is not None:
            min_dist = update_min_distances(min_dist, X, X[new])
        t_score += time.perf_counter() - t0
    return {
        "strategy": strategy,
        "seed": seed,
        "curve": curve,
        "order": [int(i) for i in order],
        "seconds": time.perf_counter() - started,
        "seconds_fit_eval": t_fit,
        "seconds_select": t_score,
    }


# ---------------------------------------------------------------------------------- peers
def run_peers(names: list[str], seed: int, data: dict, args) -> dict[str, list[dict]]:
    """The peer lines of one seed, each in its own process in the peer virtualenv; each also re-evaluated
    with Quorum's head at the checkpoints on the rows it picked."""
    from peers import al_queries

    python = al_queries.ensure_venv()
    out: dict[str, list[dict]] = {}
    start_rows = seed_rows(data["Y"], seed)
    sizes = schedule(len(start_rows), args.budget, args.batch)
    with tempfile.TemporaryDirectory(prefix="quorum-peer-ml-") as scratch:
        folder = Path(scratch)
        for key in ("X", "Y", "Xt", "Yt"):
            np.save(folder / f"{key}.npy", data[key])
        np.save(folder / "sizes.npy", np.asarray(sizes))
        np.save(folder / "seed.npy", start_rows)
        np.save(folder / "rng.npy", np.asarray(seed))
        for name in names:
            result = folder / f"{name}-{seed}.json"
            command = [str(python), str(Path(__file__).resolve().parent / "peers" / "multilabel_curves.py")]
            command += ["--data", str(folder), "--line", name, "--out", str(result)]
            env = {**os.environ, "OMP_NUM_THREADS": str(max(1, args.threads))}
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                print(f"  peer {name} seed {seed} failed:\n{done.stderr[-2000:]}")
                continue
            run = json.loads(result.read_text())
            label = PEER_LINES[name]
            own = {"strategy": label, "seed": seed, "curve": run["curve"], "seconds": run["seconds"]}
            out.setdefault(label, []).append(own)
            print(f"  {label:<24} seed {seed}: {_marks(own)}  ({run['seconds']:.0f} s, own model)")
            t0 = time.perf_counter()
            rows = np.asarray(run["order"], dtype=np.int64)
            curve = []
            for c in sizes:
                if c in CHECKPOINTS or c == sizes[-1]:
                    mask = np.zeros(len(data["X"]), dtype=bool)
                    mask[rows[:c]] = True
                    model = head(seed).set_params(warm_start=False)
                    model.fit(data["X"][rows[:c]], data["Y"][rows[:c]], **unlabelled(data["X"], mask, args))
                    curve.append(evaluate(model, data["Xt"], data["Yt"], c))
            on_head = {"strategy": label + ON_HEAD, "seed": seed, "curve": curve, "seconds": time.perf_counter() - t0}
            out.setdefault(label + ON_HEAD, []).append(on_head)
            print(f"  {label + ON_HEAD:<24} seed {seed}: {_marks(on_head)}")
            sys.stdout.flush()
    return out


# ---------------------------------------------------------------------------------- summary
def mean_curve(runs: list[dict], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = np.array([p["labels"] for p in runs[0]["curve"]])
    values = np.array([[p[key] for p in r["curve"]] for r in runs])
    return labels, values.mean(0), values.std(0)


def labels_to_reach(labels: np.ndarray, mean: np.ndarray, target: float) -> tuple[int, float] | None:
    """First measured label count whose value reaches ``target``, and the linear interpolation between it and
    the measurement before."""
    hit = np.flatnonzero(mean >= target - 1e-12)
    if not len(hit):
        return None
    j = int(hit[0])
    if j == 0:
        return int(labels[0]), float(labels[0])
    x0, x1, y0, y1 = labels[j - 1], labels[j], mean[j - 1], mean[j]
    return int(x1), float(x0 + (target - y0) / (y1 - y0) * (x1 - x0)) if y1 > y0 else float(x1)


def summarise(results: dict[str, list[dict]], budget: int) -> str:
    checkpoints = [c for c in CHECKPOINTS if c <= budget]
    if budget not in checkpoints:
        checkpoints.append(budget)
    width = max([22, *(len(name) + 2 for name in results)])
    lines = []
    head_row = f"{'line':<{width}}" + "".join(f"{f'@{c}':>17}" for c in checkpoints)
    for key, title in (("macro_f1", "test macro-F1"), ("micro_f1", "test micro-F1")):
        lines.append(f"{title} (mean ± std over seeds)")
        lines.append(head_row)
        for name, runs in results.items():
            labels, mean, std = mean_curve(runs, key)
            cells = []
            for c in checkpoints:
                j = np.flatnonzero(labels == c)
                cells.append(f"{mean[j[0]]:.4f} ± {std[j[0]]:.4f}" if len(j) else "-")
            lines.append(f"{name:<{width}}" + "".join(f"{cell:>17}" for cell in cells))
        lines.append("")
    if "random" in results:
        r_labels, r_mean, _ = mean_curve(results["random"], "macro_f1")
        target = float(r_mean[r_labels == budget][0])
        lines.append(f"labels to reach random@{budget} macro-F1 ({target:.4f}), seed-mean curves (first round reached")
        lines.append(
            "[interpolated]; peers re-evaluated with the head only at checkpoints), and checkpoints below random:"
        )
        for name, runs in results.items():
            labels, mean, _ = mean_curve(runs, "macro_f1")
            if not name.endswith(ON_HEAD) and name in PEER_LINES.values():
                lines.append(f"  {name:<{width}}{'(own model: not comparable)':>30}")
                continue
            hit = labels_to_reach(labels, mean, target)
            txt = f"{hit[0]:,} [{hit[1]:,.0f}]" if hit else f"not reached (best {mean.max():.4f})"
            below = [
                c
                for c in checkpoints
                if c in labels
                and c in r_labels
                and name != "random"
                and mean[labels == c][0] < r_mean[r_labels == c][0] - 1e-12
            ]
            worse = f"below random at {', '.join(f'@{c}' for c in below)}" if below else "never below random"
            lines.append(f"  {name:<{width}}{txt:>30}   {worse}")
        lines.append("")
    lines.append(f"at {budget} labels (mean over seeds): subset accuracy / Hamming loss / mean per-tag ECE")
    for name, runs in results.items():
        last = [r["curve"][-1] for r in runs]
        cells = [np.mean([p.get(k, np.nan) for p in last]) for k in ("subset_accuracy", "hamming_loss", "ece_mean")]
        lines.append(f"  {name:<{width}}{cells[0]:8.4f} {cells[1]:8.4f} {cells[2]:8.4f}")
    lines.append("")
    lines.append("seconds per run (mean over seeds): total / fit+evaluate / score+select")
    for name, runs in results.items():
        t = [np.mean([r.get(k, 0.0) for r in runs]) for k in ("seconds", "seconds_fit_eval", "seconds_select")]
        lines.append(f"  {name:<{width}}{t[0]:8.1f} {t[1]:8.1f} {t[2]:8.1f}")
    return "\n".join(lines)


def _marks(run: dict) -> str:
    at = {p["labels"]: p for p in run["curve"]}
    return "  ".join(f"@{c} {at[c]['macro_f1']:.4f}/{at[c]['micro_f1']:.4f}" for c in CHECKPOINTS if c in at)


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
        print(f"  {name:<26} seeds {[r['seed'] for r in runs]}")
    print()
    print(summarise(results, budgets.pop()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", default=",".join(DEFAULT_LINES), help="comma-separated lines")
    parser.add_argument("--peers", default=",".join(PEER_LINES), help="comma-separated peer lines, '' for none")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--budget", type=int, default=2000, help="label budget (default 2000)")
    parser.add_argument("--batch", type=int, default=50, help="labels per round (default 50)")
    parser.add_argument("--exploration", type=float, default=0.1, help="uniform share of each batch (default 0.1)")
    parser.add_argument("--msal-alpha", type=float, default=DEFAULT_MSAL_ALPHA, help="MSAL distance weight α")
    parser.add_argument("--msal-uncertainty", default="margin", choices=sorted(MULTILABEL_STRATEGIES))
    parser.add_argument(
        "--thresholds",
        default="pool",
        choices=("pool", "cv"),
        help="the head's thresholds: expected F1 over the unlabelled pool (default) or cross-validated F1",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--data", type=Path, default=GOEMOTIONS_DIR, help="GoEmotions folder")
    parser.add_argument("--encoder", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--device", default="auto", help="device for encoding the texts (the loop runs on CPU)")
    parser.add_argument("--out", type=Path, default=None, help="write every curve and timing as JSON here")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, help="print the summary of these --out files")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge)
    if not all((args.data / f).is_file() for f in ("train.csv", "test.csv", "labels.txt")):
        print(f"GoEmotions not found under {args.data} (train.csv, test.csv, labels.txt): benchmark skipped.")
        return 0
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = sorted(set(strategies) - set(MULTILABEL_STRATEGIES))
    if unknown:
        parser.error(f"unknown strategies {unknown}; choose from {', '.join(MULTILABEL_STRATEGIES)}")
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    if sorted(set(peers) - set(PEER_LINES)):
        parser.error(f"unknown peers {sorted(set(peers) - set(PEER_LINES))}; choose from {', '.join(PEER_LINES)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    torch.set_num_threads(max(1, args.threads))

    raw = load_goemotions(args.data)
    X, Xt = embeddings(raw, args.encoder, args.device)
    data = {"X": X, "Y": raw["train"][1], "Xt": Xt, "Yt": raw["test"][1]}
    L = data["Y"].shape[1]
    print(
        f"GoEmotions: pool {len(X):,}, test {len(Xt):,}, {L} tags, {data['Y'].sum(1).mean():.2f} tags per pool row; "
        f"embeddings {X.shape[1]}-d ({args.encoder})"
    )
    print(
        f"seed set: one row per tag ({len(seed_rows(data['Y'], seeds[0]))} rows for seed {seeds[0]}), batches of "
        f"{args.batch}, budget {args.budget:,}, seeds {seeds}, exploration {args.exploration:.0%}; MSAL "
        f"U={args.msal_uncertainty} α={args.msal_alpha}; default strategy {DEFAULT_MULTILABEL_STRATEGY!r}; "
        f"torch threads {torch.get_num_threads()}"
    )
    print()
    started = time.perf_counter()
    results: dict[str, list[dict]] = {}

    def write() -> None:
        if args.out:
            payload = {
                "budget": args.budget,
                "batch": args.batch,
                "seeds": seeds,
                "exploration": args.exploration,
                "msal": {"alpha": args.msal_alpha, "uncertainty": args.msal_uncertainty},
                "seconds": time.perf_counter() - started,
                "runs": results,
            }
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(payload, indent=1))

    for seed in seeds:  # seed by seed, so a run cut short has every line for the same seeds
        for strategy in strategies:
            run = run_one(strategy, seed, data, args)
            results.setdefault(strategy, []).append(run)
            print(f"  {strategy:<24} seed {seed}: {_marks(run)}  ({run['seconds']:.0f} s)")
            sys.stdout.flush()
            write()
        if peers:
            for name, runs in run_peers(peers, seed, data, args).items():
                results.setdefault(name, []).extend(runs)
            write()
    print()
    print(summarise(results, args.budget))
    print(f"\ntotal {(time.perf_counter() - started) / 60:.1f} min on {torch.get_num_threads()} torch thread(s)")
    if args.out:
        print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
