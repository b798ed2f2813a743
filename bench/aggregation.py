#!/usr/bin/env python
"""Label aggregation: Quorum's Dawid-Skene and majority vote against crowd-kit, accuracy and time.

Tables printed:

1. accuracy on the gold items of every set in ``../shared/datasets/crowd/`` (answers
   ``item, worker, label`` and truth ``item, label``, read by position): Quorum MV and DS (defaults)
   beside crowd-kit's ``MajorityVote`` and ``DawidSkene`` (defaults), with the differences;
2. Quorum DS variants on the same sets (crowd-kit's settings, no answer noise, shrinkage), the
   evidence for the defaults;
3. exactness: Quorum DS with crowd-kit's settings and crowd-kit's DS, both run for the same fixed
   number of EM iterations: the largest posterior difference and the label agreement;
4. fit time on synthetic answers (``--sizes``, default 100k items x 5 labels = 500k answers, and
   200k x 5 = 1M): wall and CPU seconds, iterations, accuracy against the planted truth, and the
   crowd-kit / Quorum ratios.

crowd-kit 1.4.2 is installed by ``bench/peers/crowd_kit.py`` into its own virtualenv
(``bench/.venvs/crowdkit`` or ``$CROWDKIT_BENCH_VENV``) and run there in a subprocess, so Quorum's
environment never sees pandas or crowd-kit. Timings are the best of ``--repeat`` runs for Quorum
and one run for crowd-kit (tens of seconds at 1M answers); they exclude reading and encoding the
data. The machine is small and shared: wall times are noisy, CPU seconds less so.

    python bench/aggregation.py [--sizes 100000x5,200000x5] [--repeat 3] [--no-crowdkit]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "peers"))

from annotation.aggregation_io import read_answers_csv, read_truth_csv  # noqa: E402
from annotation.dawid_skene import DawidSkene, MajorityVote  # noqa: E402

CROWD_DIR = ROOT.parent / "shared" / "datasets" / "crowd"
CROWDKIT_SETTINGS = {"smoothing": 0.0, "answer_noise": 0.0, "prior_smoothing": 0.0}
VARIANTS = {
    "DS default": {},
    "DS crowd-kit settings": CROWDKIT_SETTINGS,
    "DS answer_noise=0": {"answer_noise": 0.0},
    "DS shrinkage=1": {"shrinkage": 1.0},
    "DS shrinkage=10": {"shrinkage": 10.0},
}
EXACT_ITERATIONS = 20


# -- data -------------------------------------------------------------------------------------


def load_sets(folder: Path) -> dict:
    """``{name: (encoded answers, gold item indices, gold label indices)}`` for every set in ``folder``."""
    sets = {}
    for path in sorted(p for p in folder.iterdir() if (p / "answer.csv").exists()):
        encoded, _ = read_answers_csv(path / "answer.csv", item_col="0", worker_col="1", label_col="2")
        truth = read_truth_csv(path / "truth.csv")
        item_at = {name: i for i, name in enumerate(encoded.item_names.tolist())}
        label_at = {name: i for i, name in enumerate(encoded.label_names.tolist())}
        pairs = [(item_at[item], label_at.get(label, -1)) for item, label in truth.items() if item in item_at]
        gold_items, gold_labels = (np.array(column) for column in zip(*pairs, strict=True))
        sets[path.name] = (encoded, gold_items, gold_labels)
    return sets


def synthetic(n_items: int, per_item: int, *, n_workers: int = 1000, n_classes: int = 5, seed: int = 0):
    """Answers from a Dawid-Skene world: annotator accuracies 0.5-0.95, class-dependent confusions.

    Each item gets ``per_item`` distinct annotators (one from each of ``per_item`` blocks).
    """
    rng = np.random.default_rng(seed)
    priors = rng.dirichlet(np.full(n_classes, 5.0))
    truth = rng.choice(n_classes, size=n_items, p=priors)
    accuracy = rng.uniform(0.5, 0.95, n_workers)
    confusions = rng.dirichlet(np.ones(n_classes), size=(n_workers, n_classes)) * (1 - accuracy)[:, None, None]
    confusions[:, np.arange(n_classes), np.arange(n_classes)] += accuracy[:, None]
    block = n_workers // per_item
    items = np.repeat(np.arange(n_items), per_item)
    workers = (np.tile(np.arange(per_item) * block, n_items) + rng.integers(0, block, items.size)).astype(np.int64)
    cumulative = np.cumsum(confusions[workers, truth[items]], axis=1)
    labels = np.minimum((rng.random((items.size, 1)) > cumulative).sum(axis=1), n_classes - 1)
    return items, workers, labels, truth


# -- runners ----------------------------------------------------------------------------------


def quorum(model, items, workers, labels, counts=None, repeat: int = 1) -> dict:
    best = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        model.fit(items, workers, labels, **(counts or {}))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if best is None or wall < best["wall_s"]:
            best = {"wall_s": wall, "cpu_s": cpu}
    return {**best, "labels": model.predict(), "posteriors": model.posteriors_, "n_iter": model.n_iter_}


def crowdkit(items, workers, labels, methods) -> dict:
    from crowd_kit import run_crowdkit

    result = run_crowdkit(items, workers, labels, methods)
    for entry in result.values():
        entry["labels"] = np.asarray(entry["labels"])
        entry["confidence"] = np.asarray(entry["confidence"])
    return result


def accuracy(labels, gold_items, gold_labels) -> float:
    return float(np.mean(np.asarray(labels)[gold_items] == gold_labels))


# -- tables -----------------------------------------------------------------------------------


def table(title: str, header: list[str], rows: list[list], notes: list[str] = ()) -> None:
    cells = [[str(cell) for cell in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for index, row in enumerate(cells):
        print(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if index == 0:
            print("  ".join("-" * w for w in widths))
    for note in notes:
        print(note)


def accuracy_tables(sets: dict, with_crowdkit: bool) -> None:
    rows, variant_rows, exact_rows, time_rows = [], [], [], []
    for name, (encoded, gold_items, gold_labels) in sets.items():
        args = (encoded.items, encoded.workers, encoded.labels)
        mv = quorum(MajorityVote(), *args, encoded.counts)
        ds = quorum(DawidSkene(), *args, encoded.counts)
        ours_mv, ours_ds = (
            accuracy(mv["labels"], gold_items, gold_labels),
            accuracy(ds["labels"], gold_items, gold_labels),
        )
        row = [name, len(encoded), len(gold_items), f"{ours_mv:.4f}", f"{ours_ds:.4f}"]
        if with_crowdkit:
            exact = f"DawidSkene:n_iter={EXACT_ITERATIONS},tol=-1e300"
            peer = crowdkit(*args, ["MajorityVote", "DawidSkene", exact])
            their_mv = accuracy(peer["MajorityVote"]["labels"], gold_items, gold_labels)
            their_ds = accuracy(peer["DawidSkene"]["labels"], gold_items, gold_labels)
            row += [f"{their_mv:.4f}", f"{their_ds:.4f}", f"{ours_mv - their_mv:+.4f}", f"{ours_ds - their_ds:+.4f}"]
            fixed = quorum(DawidSkene(max_iter=EXACT_ITERATIONS, tol=0.0, **CROWDKIT_SETTINGS), *args, encoded.counts)
            their_posterior = peer[exact]["confidence"]
            ours_posterior = fixed["posteriors"][np.arange(fixed["labels"].size), peer[exact]["labels"]]
            exact_rows.append(
                [
                    name,
                    EXACT_ITERATIONS,
                    f"{np.abs(ours_posterior - their_posterior).max():.1e}",
                    f"{np.mean(fixed['labels'] == peer[exact]['labels']):.4f}",
                ]
            )
            time_rows.append(
                [
                    name,
                    f"{ds['wall_s']:.3f}",
                    ds["n_iter"],
                    f"{peer['DawidSkene']['wall_s']:.3f}",
                    peer["DawidSkene"]["n_iter"],
                    f"{peer['DawidSkene']['wall_s'] / ds['wall_s']:.0f}x",
                ]
            )
        row.append(f"{ours_ds - ours_mv:+.4f}")
        rows.append(row)
        variant_row = [
            name,
            f"{ours_mv:.4f}",
            f"{accuracy(MajorityVote(tie_break='lowest').fit_predict(*args, **encoded.counts), gold_items, gold_labels):.4f}",
        ]
        for params in VARIANTS.values():
            fitted = DawidSkene(**params).fit(*args, **encoded.counts)
            variant_row.append(f"{accuracy(fitted.predict(), gold_items, gold_labels):.4f} ({fitted.n_iter_})")
        variant_rows.append(variant_row)

    header = ["dataset", "answers", "gold", "Quorum MV", "Quorum DS"]
    if with_crowdkit:
        header += ["crowd-kit MV", "crowd-kit DS", "MV diff", "DS diff"]
    header.append("Quorum DS-MV")
    table(
        "Accuracy on gold items (defaults; diff = Quorum - crowd-kit)",
        header,
        rows,
        [
            "Quorum MV breaks ties by the voters' agreement with the majority elsewhere; crowd-kit's ties fall",
            "to whichever label pandas lists first. Quorum DS: smoothing=0.01, answer_noise=0.05, prior_smoothing=1.",
        ],
    )
    table(
        "Quorum variants (accuracy, EM iterations in brackets)",
        ["dataset", "MV skill ties", "MV lowest ties", *VARIANTS],
        variant_rows,
        ["'crowd-kit settings' = smoothing=0, answer_noise=0, prior_smoothing=0, run to Quorum's tolerance."],
    )
    if with_crowdkit:
        table(
            f"Exactness: crowd-kit DS vs Quorum DS with crowd-kit settings, both {EXACT_ITERATIONS} EM iterations",
            ["dataset", "iterations", "max |posterior diff|", "label agreement"],
            exact_rows,
        )
        table(
            "DS fit time on the real sets (wall seconds, defaults; crowd-kit stops on its own criterion)",
            ["dataset", "Quorum s", "Quorum iters", "crowd-kit s", "crowd-kit iters", "ratio"],
            time_rows,
        )


def speed_table(sizes: list[tuple[int, int]], repeat: int, with_crowdkit: bool) -> None:
    rows = []
    for n_items, per_item in sizes:
        items, workers, labels, truth = synthetic(n_items, per_item)
        label = f"{n_items // 1000}k x {per_item} = {items.size / 1e6:g}M"
        peer = crowdkit(items, workers, labels, ["MajorityVote", "DawidSkene"]) if with_crowdkit else {}
        for method, model, peer_name in [("MV", MajorityVote(), "MajorityVote"), ("DS", DawidSkene(), "DawidSkene")]:
            ours = quorum(model, items, workers, labels, repeat=repeat)
            row = [
                label,
                method,
                f"{ours['wall_s']:.3f}",
                f"{ours['cpu_s']:.3f}",
                ours["n_iter"],
                f"{np.mean(ours['labels'] == truth):.4f}",
            ]
            if with_crowdkit:
                theirs = peer[peer_name]
                iterations = theirs["n_iter"] if theirs["n_iter"] is not None else 0
                row += [
                    f"{theirs['wall_s']:.2f}",
                    f"{theirs['cpu_s']:.2f}",
                    iterations,
                    f"{np.mean(theirs['labels'] == truth):.4f}",
                    f"{theirs['wall_s'] / ours['wall_s']:.0f}x",
                    f"{theirs['cpu_s'] / max(ours['cpu_s'], 1e-9):.0f}x",
                ]
                if method == "DS" and iterations and ours["n_iter"]:
                    per_iteration = (theirs["wall_s"] / iterations) / (ours["wall_s"] / ours["n_iter"])
                    row.append(f"{per_iteration:.0f}x")
                else:
                    row.append("")
            rows.append(row)
    header = ["synthetic (items x labels)", "method", "Quorum wall s", "Quorum cpu s", "iters", "Quorum acc"]
    if with_crowdkit:
        header += [
            "crowd-kit wall s",
            "crowd-kit cpu s",
            "iters",
            "crowd-kit acc",
            "wall ratio",
            "cpu ratio",
            "per-iter ratio",
        ]
    table(
        f"Fit time on synthetic answers (Quorum best of {repeat}, crowd-kit one run; 5 classes, 1,000 annotators)",
        header,
        rows,
        ["ratio = crowd-kit seconds / Quorum seconds. 2 shared cores: wall times are noisy."],
    )


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        n_items, _, per_item = part.partition("x")
        sizes.append((int(n_items), int(per_item or 5)))
    return sizes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000x5,200000x5", help="synthetic sizes, ITEMSxLABELS, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="Quorum timing: best of this many fits")
    parser.add_argument("--datasets", type=Path, default=CROWD_DIR, help="folder of crowd sets")
    parser.add_argument("--no-crowdkit", action="store_true", help="Quorum only (no peer venv)")
    args = parser.parse_args(argv)
    with_crowdkit = not args.no_crowdkit
    if with_crowdkit:
        from crowd_kit import ensure_venv

        ensure_venv()
    if args.datasets.is_dir():
        accuracy_tables(load_sets(args.datasets), with_crowdkit)
    else:
        print(f"{args.datasets} not found: skipping the accuracy tables")
    speed_table(parse_sizes(args.sizes), args.repeat, with_crowdkit)


if __name__ == "__main__":
    main()
