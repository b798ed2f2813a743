#!/usr/bin/env python
"""False stops of the dashboard's stopping signal, on simulated active-learning loops.

A loop per (dataset, strategy, seed), as the app runs one:

- frozen all-MiniLM-L6-v2 vectors (cached under ``var/cache/``), one seed label per class, then
  batches of ``--batch`` (50): ``1 − ε`` of them picked by the strategy (``random`` or ``margin``,
  ``acquisition.strategies.select_batch``) and ``ε`` = ``--explore`` (0.1, the projects' default
  ``exploration_fraction``) uniformly from the rest of the pool;
- after every batch a version: the evaluation model is fitted without the held-out labels that the
  app would hold out (``acquisition.evaluation.evaluation_split`` with ``eval_fraction`` 0.2:
  exploration labels first, topped up to 50 from the others) and scored on them, which is the
  dashboard's learning curve; the serving model is fitted on every label, scores the pool for the
  strategy and predicts the stop set (``curves.stop_set``: 2,000 pool items chosen once per run, as
  ``acquisition.services.stopping`` chooses them per project). Both models are
  ``HeadCommittee`` logistic heads as ``bench/learning_curve.py`` ``evaluation_model`` builds them;
- the truth is the serving model's accuracy on the dataset's test split, never seen by the loop.

Rules, applied after every version, each declaring a stop at the first version it says so:

- ``new``: ``acquisition.curves.stopping_rule`` (kappa against the model ≥ 500 labels earlier on the
  stop set, ≥ its threshold for 3 versions running, unless the held-out gain's lower bound says
  labels still pay): what the dashboard shows now;
- ``old``: ``acquisition.curves.stopping_signal`` on the held-out curve (least-squares slope over the
  last 500 labels under 0.5 point per 100 labels): what it showed before;
- ``bvs``: Bloodgood & Vijay-Shanker's rule as published: the mean kappa of each version with the
  one before it, over the last 3, at least 0.99 (here successive versions are one batch apart).

A stop at ``n`` labels is false when the test accuracy at ``n + 500`` labels is more than 1 point
above that at ``n``; a stop too late to tell (``n + 500`` past ``--budget``) is counted apart. "safe"
is the first version at which stopping would not have been false; "late" the labels a rule's stop
came after it.

Datasets: ``banking77`` (``../shared/datasets/banking77``: 10,003 pool items, 77 intents) and
``goemotions`` (``../shared/datasets/goemotions``: the comments with exactly one label, ``neutral``
included: 36,308 pool items, 28 classes, 35 % of them ``neutral``). Absent ones are skipped.

    nice -n 10 python bench/stopping.py [--datasets banking77,goemotions] [--strategies random,margin]
                                        [--seeds 0,1,2] [--budget 4000] [--batch 50] [--explore 0.1]
                                        [--threads 1] [--out results.json]
"""

from __future__ import annotations

import argparse
import csv
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

from acquisition import curves, evaluation  # noqa: E402
from acquisition.committee import HeadCommittee  # noqa: E402
from acquisition.datasets import LabelledDataset, Split, dataset_embeddings  # noqa: E402
from acquisition.sampling import uniform_keys  # noqa: E402
from acquisition.strategies import select_batch  # noqa: E402

GOEMOTIONS_DIR = ROOT.parent / "shared" / "datasets" / "goemotions"
ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
EVAL_FRACTION = 0.2  # the projects' default eval_fraction
FALSE_STOP_GAIN = 0.01
LOOK_AHEAD = 500
RULES = ("new", "old", "bvs")


# ------------------------------------------------------------------------------------------ data
def goemotions_available(path: Path = GOEMOTIONS_DIR) -> bool:
    return all((path / name).is_file() for name in ("train.csv", "test.csv", "labels.txt"))


def load_goemotions_single(path: Path = GOEMOTIONS_DIR) -> LabelledDataset:
    """GoEmotions' comments that carry exactly one label (``neutral`` counts as one)."""
    categories = [line.strip() for line in (path / "labels.txt").read_text(encoding="utf-8").splitlines()]
    categories = [c for c in categories if c]
    index = {name: i for i, name in enumerate(categories)}

    def split(name: str) -> Split:
        with open(path / f"{name}.csv", newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.DictReader(handle) if "|" not in row["labels"]]
        return Split([row["text"] for row in rows], np.array([index[row["labels"]] for row in rows], dtype=np.int64))

    return LabelledDataset("goemotions-single", split("train"), split("test"), categories)


def load(name: str) -> dict | None:
    if name == "banking77":
        if not banking77_available(BANKING77_DIR):
            return None
        data = load_banking77(BANKING77_DIR)
        X, Xt = cached_embeddings(data, ENCODER, device="auto")
    elif name == "goemotions":
        if not goemotions_available():
            return None
        data = load_goemotions_single()
        X, Xt = dataset_embeddings(data, ENCODER, ROOT / "var" / "cache", device="auto")
    else:
        raise ValueError(name)
    return {"X": X, "y": data.train.labels, "Xt": Xt, "yt": data.test.labels, "n_classes": len(data.categories)}


# ------------------------------------------------------------------------------------------ loop
def head(seed: int) -> HeadCommittee:
    """``bench/learning_curve.py`` ``evaluation_model``: one logistic head, warm-started refits."""
    return HeadCommittee(
        n_members=1, bootstrap=False, weight_decay=0.1, epochs=200, random_state=seed, tol=1e-5, warm_start=True
    )


def bvs_stop(history: list[dict], *, window: int = curves.WINDOW, threshold: float = 0.99) -> bool:
    kappas = [p["previous_kappa"] for p in history[-window:] if p.get("previous_kappa") is not None]
    return len(kappas) == window and float(np.mean(kappas)) >= threshold


def run_one(data: dict, strategy: str, seed: int, args) -> dict:
    X, y, Xt, yt, C = data["X"], data["y"], data["Xt"], data["yt"], data["n_classes"]
    n_pool = len(X)
    rng = np.random.default_rng(seed)
    first = np.array([rng.choice(np.flatnonzero(y == c)) for c in range(C) if (y == c).any()], dtype=np.int64)
    labelled = np.zeros(n_pool, dtype=bool)
    labelled[first] = True
    order = list(first)
    group = np.full(n_pool, evaluation.OTHER, dtype=np.int64)
    eval_keys = uniform_keys(np.arange(n_pool), seed, salt=11)
    stop_ids = curves.stop_set(np.arange(n_pool), seed)
    serving, evaluator = head(seed), head(seed)
    history: list[dict] = []
    predictions: list[np.ndarray] = []
    stops: dict[str, int | None] = dict.fromkeys(RULES)
    started = time.perf_counter()
    round_no = 0
    while True:
        idx = np.asarray(order, dtype=np.int64)
        held = evaluation.evaluation_split(y[idx], group[idx], eval_keys[idx], fraction=EVAL_FRACTION)
        serving.fit(X[idx], y[idx], n_classes=C)
        point: dict = {"version": round_no + 1, "labels": len(idx), "accuracy": None, "n_eval": int(held.sum())}
        if held.any():
            evaluator.fit(X[idx[~held]], y[idx[~held]], n_classes=C)
            point["accuracy"] = float(np.mean(evaluator.predict(X[idx[held]]) == y[idx[held]]))
        point["test_accuracy"] = float(np.mean(serving.predict(Xt) == yt))
        probs = serving.predict_proba(X)
        predictions.append(probs[stop_ids].argmax(1))
        if history:
            point["previous_kappa"] = curves.prediction_agreement(predictions[-1], predictions[-2])["kappa"]
        ref = curves.stability_reference([(p["version"], p["labels"]) for p in history], len(idx))
        if ref is not None:
            agreement = curves.prediction_agreement(predictions[-1], predictions[ref - 1])
            point["stability"] = {
                "kappa": agreement["kappa"],
                "reference_version": ref,
                "span": len(idx) - history[ref - 1]["labels"],
            }
        history.append(point)
        checks = {
            "new": curves.stopping_rule(history)["stop"],
            "old": bool((curves.stopping_signal([p for p in history if p["accuracy"] is not None]) or {}).get("stop")),
            "bvs": bvs_stop(history),
        }
        for rule, says in checks.items():
            if says and stops[rule] is None:
                stops[rule] = len(idx)
        if len(idx) >= args.budget:
            break
        batch = min(args.batch, args.budget - len(idx))
        n_explore = int(round(args.explore * batch))
        candidates = np.flatnonzero(~labelled)
        k = batch - n_explore
        if strategy == "random":
            picked = select_batch("random", k, scores=torch.zeros(len(candidates)), seed=seed * 100_003 + round_no)
        else:
            picked = select_batch(strategy, k, probs=probs[candidates], seed=seed * 100_003 + round_no)
        picked = candidates[picked.indices]
        rest = np.setdiff1d(candidates, picked)
        explored = rest[np.argsort(uniform_keys(rest, seed * 100_003 + round_no, salt=1))[:n_explore]]
        group[explored] = evaluation.EXPLORATION
        new = np.concatenate([picked, explored])
        labelled[new] = True
        order.extend(new.tolist())
        round_no += 1
    return {
        "strategy": strategy,
        "seed": seed,
        "stops": stops,
        "curve": [{k: v for k, v in p.items() if k != "stability"} for p in history],
        "seconds": time.perf_counter() - started,
    }


# ---------------------------------------------------------------------------------------- judging
def gain_after(curve: list[dict], labels: int, ahead: int = LOOK_AHEAD) -> float | None:
    """Test accuracy ``ahead`` labels after ``labels`` minus that at ``labels`` (None past the run's end)."""
    at = {p["labels"]: p["test_accuracy"] for p in curve}
    later = [n for n in at if n >= labels + ahead]
    return at[min(later)] - at[labels] if later else None


def judge(run: dict) -> dict:
    curve = run["curve"]
    safe = next((p["labels"] for p in curve if (g := gain_after(curve, p["labels"])) is not None and g <= 0.01), None)
    out = {"safe": safe}
    for rule, labels in run["stops"].items():
        gain = gain_after(curve, labels) if labels is not None else None
        out[rule] = {
            "labels": labels,
            "gain": gain,
            "false": gain is not None and gain > FALSE_STOP_GAIN,
            "judged": gain is not None,
        }
    return out


def summarise(name: str, runs: list[dict]) -> list[str]:
    lines = [f"{name}: false stops (test accuracy +1 point or more in the next {LOOK_AHEAD} labels)"]
    lines.append(
        f"  {'strategy':<9}{'rule':<6}{'per seed: stop at (gain in the next 500)':<58}{'false/judged':>13}{'late':>7}"
    )
    for strategy in dict.fromkeys(r["strategy"] for r in runs):
        mine = [r for r in runs if r["strategy"] == strategy]
        verdicts = [judge(r) for r in mine]
        for rule in RULES:
            cells, late = [], []
            for v in verdicts:
                s = v[rule]
                if s["labels"] is None:
                    cells.append("none")
                elif not s["judged"]:
                    cells.append(f"{s['labels']} (–)")
                else:
                    cells.append(f"{s['labels']} ({100 * s['gain']:+.1f}){'!' if s['false'] else ''}")
                if s["labels"] is not None and v["safe"] is not None:
                    late.append(s["labels"] - v["safe"])
            judged = sum(v[rule]["judged"] for v in verdicts)
            false = sum(v[rule]["false"] for v in verdicts)
            late_txt = f"{np.mean(late):+.0f}" if late else "–"
            lines.append(f"  {strategy:<9}{rule:<6}{', '.join(cells):<58}{f'{false}/{judged}':>13}{late_txt:>7}")
        safe = ", ".join(str(v["safe"]) for v in verdicts)
        lines.append(f"  {strategy:<9}{'safe':<6}{safe}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="banking77,goemotions")
    parser.add_argument("--strategies", default="random,margin")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budget", type=int, default=4000, help="labels per run (default 4000)")
    parser.add_argument("--batch", type=int, default=50, help="labels per version (default 50)")
    parser.add_argument("--explore", type=float, default=0.1, help="uniform share of every batch (default 0.1)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--out", type=Path, default=None, help="write every run's curve and stops as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    report, payload = [], {}
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        data = load(name)
        if data is None:
            print(f"{name}: dataset not found under ../shared/datasets: skipped")
            continue
        print(f"{name}: pool {len(data['X']):,}, test {len(data['Xt']):,}, {data['n_classes']} classes")
        runs = []
        for strategy in strategies:
            for seed in seeds:
                run = run_one(data, strategy, seed, args)
                runs.append(run)
                stops = "  ".join(f"{rule} {run['stops'][rule]}" for rule in RULES)
                last = run["curve"][-1]
                print(
                    f"  {strategy:<8} seed {seed}: test accuracy {last['test_accuracy']:.4f} at {last['labels']} "
                    f"labels; stops: {stops}  ({run['seconds']:.0f} s)",
                    flush=True,
                )
        report += summarise(name, runs) + [""]
        payload[name] = runs
    print()
    print("\n".join(report))
    if args.out:
        args.out.write_text(json.dumps({"budget": args.budget, "batch": args.batch, "runs": payload}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
