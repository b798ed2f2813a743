#!/usr/bin/env python
"""Label aggregation: Quorum's default (hierarchical Dawid-Skene) against crowd-kit, accuracy, calibration, time.

Tables printed, crowd-kit 1.4.2 measured in the same run:

1. accuracy on the gold items of every set in ``../shared/datasets/crowd/`` (answers
   ``item, worker, label`` and truth ``item, label``, read by position): Quorum's default
   ``HierarchicalDawidSkene`` (HDS), Quorum MV and classic DS beside crowd-kit's ``MajorityVote``,
   ``DawidSkene``, ``OneCoinDawidSkene``, ``GLAD`` and ``MACE`` (GLAD and MACE capped on sets of more
   than 10k answers, see ``bench/peers/crowd_kit.py``), then the mean per method;
2. calibration on the same sets: expected calibration error (15 equal-width bins, Guo et al. 2017)
   of the chosen label's confidence against gold: HDS without gold (temperature from held-out
   answers), HDS with gold (two-fold cross-fit: half the gold as ``true_labels``, scored on the
   other half), and the accuracy of the latter on the held-out half;
3. synthetic sweeps (``SWEEP``: 2-100 classes, 2-50 annotators, 1-20 labels per item, skilled /
   spammer / biased annotators, class imbalance; ``--seeds`` seeds each): mean accuracy against the
   planted truth per method, and the mean per method;
4. the issue's sparse case: 77 classes, 150 items, 2 labels each from 2 of 3 annotators at 0.96 /
   0.92 / 0.88: accuracy and the estimated (prior-weighted) annotator accuracies against the
   planted and the realised ones;
5. exactness: Quorum's classic DS with crowd-kit's settings and crowd-kit's DS, both run for the
   same fixed number of EM iterations: the largest posterior difference and the label agreement;
6. fit time on synthetic answers (``--sizes``, default 200k items x 5 = 1M answers): wall and CPU
   seconds and peak memory (``tracemalloc``) of Quorum's fits, crowd-kit's to its own convergence,
   and the ratios; below the table, which model HDS kept and how it chose it (above 50k answers:
   on a subset). ``--skip real,sweep`` runs this part alone.

crowd-kit is installed by ``bench/peers/crowd_kit.py`` into its own virtualenv
(``bench/.venvs/crowdkit`` or ``$CROWDKIT_BENCH_VENV``) and run there in a subprocess, so Quorum's
environment never sees pandas or crowd-kit. Timings exclude reading and encoding the data; the
machine is small and shared: wall times are noisy, CPU seconds less so.

    python bench/aggregation.py [--sizes 200000x5] [--repeat 3] [--seeds 3] [--no-crowdkit]
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "peers"))

from annotation.aggregation_io import read_answers_csv, read_truth_csv  # noqa: E402
from annotation.dawid_skene import DawidSkene, HierarchicalDawidSkene, MajorityVote  # noqa: E402

CROWD_DIR = ROOT.parent / "shared" / "datasets" / "crowd"
CROWDKIT_SETTINGS = {"smoothing": 0.0, "answer_noise": 0.0, "prior_smoothing": 0.0}
EXACT_ITERATIONS = 20
PEERS = ("MajorityVote", "DawidSkene", "OneCoinDawidSkene", "GLAD", "MACE")
PEER_SHORT = {"MajorityVote": "ck MV", "DawidSkene": "ck DS", "OneCoinDawidSkene": "ck 1coin", "GLAD": "ck GLAD"}
PEER_SHORT["MACE"] = "ck MACE"
OURS = {"HDS (default)": HierarchicalDawidSkene, "Quorum MV": MajorityVote, "Quorum DS": DawidSkene}

#: Synthetic sweep: (name, classes, annotators, labels per item, items, annotator mix, class imbalance).
#: Mix: shares of skilled (one-coin accuracy drawn in ``skill``), spammers (half answer at random,
#: half always give one label) and biased annotators (skilled, but answer class b for 60 % of class a).
SWEEP = [
    ("2 cls, 3 ann, 2/item", 2, 3, 2, 300, {"skilled": 1.0}, 0.0, (0.65, 0.95)),
    ("2 cls, 10 ann, 5/item, 30% spam", 2, 10, 5, 500, {"skilled": 0.7, "spammer": 0.3}, 0.0, (0.6, 0.9)),
    ("2 cls, 50 ann, 10/item, weak+spam", 2, 50, 10, 400, {"skilled": 0.8, "spammer": 0.2}, 0.0, (0.55, 0.7)),
    ("3 cls, 50 ann, 20/item, 30% spam", 3, 50, 20, 200, {"skilled": 0.7, "spammer": 0.3}, 0.0, (0.5, 0.75)),
    ("4 cls, 8 ann, 5/item, imbalanced+biased", 4, 8, 5, 500, {"skilled": 0.75, "biased": 0.25}, 2.0, (0.6, 0.9)),
    ("5 cls, 5 ann, 3/item, 1 biased", 5, 5, 3, 400, {"skilled": 0.8, "biased": 0.2}, 0.0, (0.6, 0.9)),
    ("5 cls, 20 ann, 1/item, imbalanced", 5, 20, 1, 500, {"skilled": 1.0}, 2.0, (0.6, 0.95)),
    ("10 cls, 6 ann, 2/item, half biased", 10, 6, 2, 400, {"skilled": 0.5, "biased": 0.5}, 0.0, (0.7, 0.95)),
    ("10 cls, 50 ann, 3/item, 20% spam", 10, 50, 3, 600, {"skilled": 0.8, "spammer": 0.2}, 0.0, (0.6, 0.9)),
    ("20 cls, 4 ann, 2/item", 20, 4, 2, 300, {"skilled": 1.0}, 1.0, (0.75, 0.95)),
    ("77 cls, 3 ann, 2/item (issue)", 77, 3, 2, 150, {"fixed": (0.96, 0.92, 0.88)}, 0.0, (0.88, 0.96)),
    ("100 cls, 10 ann, 3/item, biased", 100, 10, 3, 500, {"skilled": 0.8, "biased": 0.2}, 1.0, (0.7, 0.95)),
]


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


def sweep_world(n_classes, n_workers, per_item, n_items, mix, imbalance, skill, seed):
    """One sweep configuration: answers, the planted truth and each annotator's planted accuracy.

    ``imbalance`` > 0: class priors proportional to ``exp(-imbalance * j / C)`` (a few frequent
    classes and a long tail). Each item is labelled by ``per_item`` distinct annotators drawn at
    random; errors of skilled annotators are spread evenly over the other classes.
    """
    rng = np.random.default_rng(seed)
    C = n_classes
    priors = np.exp(-imbalance * np.arange(C) * 4.0 / C)
    priors /= priors.sum()
    truth = rng.choice(C, n_items, p=priors)
    confusions = np.empty((n_workers, C, C))
    if "fixed" in mix:
        kinds = ["skilled"] * n_workers
        accuracy = np.asarray(mix["fixed"], dtype=float)
    else:
        names = list(mix)
        counts = np.floor(np.array([mix[k] for k in names]) * n_workers).astype(int)
        counts[0] += n_workers - counts.sum()
        kinds = [k for k, c in zip(names, counts, strict=True) for _ in range(c)]
        accuracy = rng.uniform(*skill, n_workers)
    for r, kind in enumerate(kinds):
        confusions[r] = (1 - accuracy[r]) / (C - 1)
        np.fill_diagonal(confusions[r], accuracy[r])
        if kind == "spammer":
            confusions[r] = 1.0 / C if r % 2 else np.eye(C)[rng.integers(C)][None, :].repeat(C, 0)
        elif kind == "biased":
            a, b = rng.choice(C, 2, replace=False)
            confusions[r, a] = 0.0
            confusions[r, a, b], confusions[r, a, a] = 0.6, 0.4
    items = np.repeat(np.arange(n_items), per_item)
    workers = np.argsort(rng.random((n_items, n_workers)), axis=1)[:, :per_item].ravel()
    cumulative = np.cumsum(confusions[workers, truth[items]], axis=1)
    labels = np.minimum((rng.random((items.size, 1)) > cumulative).sum(axis=1), C - 1)
    planted = np.einsum("j,rjj->r", priors, confusions)
    return items, workers, labels, truth, planted


# -- runners ----------------------------------------------------------------------------------


def quorum(model, items, workers, labels, counts=None, repeat: int = 1, memory: bool = False) -> dict:
    best = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        model.fit(items, workers, labels, **(counts or {}))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if best is None or wall < best["wall_s"]:
            best = {"wall_s": wall, "cpu_s": cpu}
    if memory:
        tracemalloc.start()
        model.fit(items, workers, labels, **(counts or {}))
        best["peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    chosen = getattr(model, "model_", None), getattr(model, "selection_", None)
    return {
        **best,
        "labels": model.predict(),
        "posteriors": model.posteriors_,
        "n_iter": model.n_iter_,
        "chosen": chosen,
    }


def crowdkit(items, workers, labels, methods) -> dict:
    from crowd_kit import run_crowdkit

    result = run_crowdkit(items, workers, labels, methods)
    for entry in result.values():
        entry["labels"] = np.asarray(entry["labels"])
        entry["confidence"] = np.asarray(entry["confidence"])
    return result


def peer_specs(n_answers: int, *, capped: bool = False) -> dict[str, str]:
    """crowd-kit method specs: GLAD and MACE capped on big sets, or always (``crowd_kit.CAPPED``)."""
    from crowd_kit import CAPPED, CAPPED_ABOVE

    return {name: CAPPED.get(name, name) if capped or n_answers > CAPPED_ABOVE else name for name in PEERS}


def accuracy(labels, gold_items, gold_labels) -> float:
    return float(np.mean(np.asarray(labels)[gold_items] == gold_labels))


def expected_calibration_error(confidence, correct, bins: int = 15) -> float:
    """ECE (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017): the bin-size-weighted
    mean |confidence - accuracy| over equal-width confidence bins."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    which = np.clip(np.digitize(confidence, np.linspace(0, 1, bins + 1)[1:-1]), 0, bins - 1)
    error = 0.0
    for b in np.unique(which):
        mask = which == b
        error += mask.mean() * abs(confidence[mask].mean() - correct[mask].mean())
    return float(error)


def gold_cross_fit(encoded, gold_items, gold_labels) -> tuple[float, float, float]:
    """HDS with half the gold as ``true_labels``, scored on the other half (two folds): ECE,
    accuracy and the mean temperature."""
    errors, hits, taus = [], [], []
    for fold in (0, 1):
        train = np.arange(gold_items.size) % 2 == fold
        true = np.full(encoded.counts["n_items"], -1)
        known = gold_labels >= 0
        true[gold_items[train & known]] = gold_labels[train & known]
        model = HierarchicalDawidSkene().fit(
            encoded.items, encoded.workers, encoded.labels, **encoded.counts, true_labels=true
        )
        test = gold_items[~train]
        correct = model.predict()[test] == gold_labels[~train]
        errors.append(expected_calibration_error(model.confidence()[test], correct))
        hits.append(correct.mean())
        taus.append(model.temperature_)
    return float(np.mean(errors)), float(np.mean(hits)), float(np.mean(taus))


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
    sys.stdout.flush()


def compare_row(name: str, scores: dict[str, float], columns: list[str]) -> list:
    row = [name, *(f"{scores[c]:.4f}" if c in scores else "-" for c in columns)]
    mv = scores.get("Quorum MV")
    ck_ds = scores.get("ck DS")
    row.append(f"{scores['HDS (default)'] - mv:+.4f}")
    row.append(f"{2 * scores['_se']:.4f}" if "_se" in scores else "-")
    row.append("-" if ck_ds is None else f"{scores['HDS (default)'] - ck_ds:+.4f}")
    return row


def paired_se(ours, theirs, truth) -> float:
    """Standard error of the accuracy difference of two label vectors on the same items (paired)."""
    difference = (np.asarray(ours) == truth).astype(float) - (np.asarray(theirs) == truth)
    return float(difference.std(ddof=1) / np.sqrt(difference.size)) if difference.size > 1 else 0.0


def mean_row(all_scores: list[dict], columns: list[str]) -> list:
    means = {c: float(np.mean([s[c] for s in all_scores])) for c in columns if all(c in s for s in all_scores)}
    if all("_se" in s for s in all_scores):
        means["_se"] = float(np.sqrt(sum(s["_se"] ** 2 for s in all_scores)) / len(all_scores))
    return compare_row("mean", means, columns)


def real_sets_tables(sets: dict, with_crowdkit: bool) -> None:
    columns = [*OURS, *(PEER_SHORT[p] for p in PEERS)] if with_crowdkit else list(OURS)
    rows, all_scores, calib_rows, exact_rows = [], [], [], []
    for name, (encoded, gold_items, gold_labels) in sets.items():
        args = (encoded.items, encoded.workers, encoded.labels)
        scores, confidences, predictions = {}, {}, {}
        for label, factory in OURS.items():
            model = factory().fit(*args, **encoded.counts)
            scores[label] = accuracy(model.predict(), gold_items, gold_labels)
            confidences[label] = model.confidence()[gold_items], model.predict()[gold_items] == gold_labels
            predictions[label] = model.predict()[gold_items]
            if label == "HDS (default)":
                tau, chosen = model.temperature_, model.model_
        scores["_se"] = paired_se(predictions["HDS (default)"], predictions["Quorum MV"], gold_labels)
        capped = ""
        if with_crowdkit:
            specs = peer_specs(len(encoded))
            exact = f"DawidSkene:n_iter={EXACT_ITERATIONS},tol=-1e300"
            peer = crowdkit(*args, [*specs.values(), exact])
            for short, spec in specs.items():
                scores[PEER_SHORT[short]] = accuracy(peer[spec]["labels"], gold_items, gold_labels)
            ck_ds = peer[specs["DawidSkene"]]
            confidences["ck DS"] = ck_ds["confidence"][gold_items], ck_ds["labels"][gold_items] == gold_labels
            capped = " (GLAD, MACE capped)" if specs["GLAD"] != "GLAD" else ""
            fixed = quorum(DawidSkene(max_iter=EXACT_ITERATIONS, tol=0.0, **CROWDKIT_SETTINGS), *args, encoded.counts)
            ours_posterior = fixed["posteriors"][np.arange(fixed["labels"].size), peer[exact]["labels"]]
            exact_rows.append(
                [
                    name,
                    EXACT_ITERATIONS,
                    f"{np.abs(ours_posterior - peer[exact]['confidence']).max():.1e}",
                    f"{np.mean(fixed['labels'] == peer[exact]['labels']):.4f}",
                ]
            )
        rows.append([*compare_row(name + capped, scores, columns), chosen])
        all_scores.append(scores)
        cross_ece, cross_acc, cross_tau = gold_cross_fit(encoded, gold_items, gold_labels)
        calib_rows.append(
            [
                name,
                len(gold_items),
                f"{expected_calibration_error(*confidences['HDS (default)']):.3f}",
                f"{tau:.2f}",
                f"{expected_calibration_error(*confidences['Quorum MV']):.3f}",
                f"{expected_calibration_error(*confidences['ck DS']):.3f}" if "ck DS" in confidences else "-",
                f"{cross_ece:.3f}",
                f"{cross_tau:.2f}",
                f"{cross_acc:.4f}",
            ]
        )
    rows.append([*mean_row(all_scores, columns), ""])
    table(
        "1. Accuracy on gold items, real crowd sets (same run; ck = crowd-kit 1.4.2)",
        ["dataset", *columns, "HDS-MV", "2 SE", "HDS-ckDS", "HDS model"],
        rows,
        [
            "HDS = HierarchicalDawidSkene (Quorum's default, no gold given); 'HDS model': the rung its held-out",
            "choice kept. 2 SE: twice the paired standard error of HDS-MV (the noise of that difference).",
            "Quorum MV breaks ties by the voters'",
            "track record; Quorum DS = classic DS (smoothing=0.01, answer_noise=0.05). GLAD/MACE on sets over 10k",
            "answers: GLAD n_iter=20, m_step_max_iter=10; MACE n_restarts=2, n_iter=20 (uncapped they take minutes).",
        ],
    )
    table(
        "2. Calibration: ECE of the chosen label's confidence against gold (15 bins)",
        ["dataset", "gold", "HDS ECE", "tau", "MV ECE", "ck DS ECE", "HDS+gold ECE", "tau", "HDS+gold acc"],
        calib_rows,
        [
            "HDS: no gold, temperature from held-out answers. HDS+gold: two-fold cross-fit, half the gold as",
            "true_labels (clamped, teaching skills, temperature fitted on them), ECE and accuracy on the other half.",
        ],
    )
    if exact_rows:
        table(
            f"5. Exactness: crowd-kit DS vs Quorum DS with crowd-kit settings, both {EXACT_ITERATIONS} EM iterations",
            ["dataset", "iterations", "max |posterior diff|", "label agreement"],
            exact_rows,
        )


def sweep_tables(seeds: int, with_crowdkit: bool) -> None:
    columns = [*OURS, *(PEER_SHORT[p] for p in PEERS)] if with_crowdkit else list(OURS)
    rows, all_scores, sparse_rows = [], [], []
    for name, C, W, L, n_items, mix, imbalance, skill in SWEEP:
        per_seed = []
        for seed in range(seeds):
            items, workers, labels, truth, planted = sweep_world(C, W, L, n_items, mix, imbalance, skill, seed)
            counts = {"n_items": n_items, "n_workers": W, "n_classes": C}
            scores, predictions = {}, {}
            for label, factory in OURS.items():
                model = factory().fit(items, workers, labels, **counts)
                scores[label] = float(np.mean(model.predict() == truth))
                predictions[label] = model.predict()
                if label == "HDS (default)" and "fixed" in mix:
                    realised = np.array([np.mean(labels[workers == r] == truth[items[workers == r]]) for r in range(W)])
                    mv_skill = MajorityVote().fit(items, workers, labels, **counts).skills_
                    ds_skill = DawidSkene().fit(items, workers, labels, **counts).skills_
                    sparse_rows.append(
                        [
                            seed,
                            " ".join(f"{x:.3f}" for x in planted),
                            " ".join(f"{x:.3f}" for x in realised),
                            " ".join(f"{x:.3f}" for x in model.skills_),
                            f"{np.abs(model.skills_ - planted).max():.3f}",
                            f"{np.abs(model.skills_ - realised).max():.3f}",
                            " ".join(f"{x:.3f}" for x in ds_skill),
                            " ".join(f"{x:.3f}" for x in mv_skill),
                        ]
                    )
            if with_crowdkit:
                specs = peer_specs(items.size, capped=True)
                peer = crowdkit(items, workers, labels, list(specs.values()))
                for short, spec in specs.items():
                    got = peer[spec]["labels"]
                    full = np.full(n_items, -1)
                    full[: got.size] = got
                    scores[PEER_SHORT[short]] = float(np.mean(full == truth))
            scores["_se"] = paired_se(predictions["HDS (default)"], predictions["Quorum MV"], truth)
            per_seed.append(scores)
        mean = {c: float(np.mean([s[c] for s in per_seed])) for c in per_seed[0]}
        mean["_se"] = float(np.sqrt(sum(s["_se"] ** 2 for s in per_seed)) / len(per_seed))
        rows.append(compare_row(name, mean, columns))
        all_scores.append(mean)
    rows.append(mean_row(all_scores, columns))
    table(
        f"3. Synthetic sweeps: accuracy against the planted truth, mean of {seeds} seeds (same run)",
        ["configuration", *columns, "HDS-MV", "2 SE", "HDS-ckDS"],
        rows,
        [
            "Skilled: one-coin accuracy uniform in the row's range, errors spread evenly; spammer: half answer at",
            "random, half always one label; biased: answers class b for 60 % of class a. Imbalanced: priors",
            "proportional to exp(-4 * imbalance * j / C). crowd-kit GLAD and MACE capped here as on the big real",
            "sets (GLAD n_iter=20, m_step_max_iter=10; MACE n_restarts=2, n_iter=20) to keep the run in minutes.",
        ],
    )
    table(
        "4. The issue's sparse case (77 classes, 150 items, 2 labels/item, annotators 0.96/0.92/0.88):"
        " estimated annotator accuracy (prior-weighted)",
        ["seed", "planted", "realised", "HDS estimate", "max |est-planted|", "max |est-realised|", "classic DS", "MV"],
        sparse_rows,
        ["Accuracy of every method on these data: row '77 cls, 3 ann, 2/item (issue)' of table 3."],
    )


def speed_table(sizes: list[tuple[int, int]], repeat: int, with_crowdkit: bool) -> None:
    rows, choices = [], []
    for n_items, per_item in sizes:
        items, workers, labels, truth = synthetic(n_items, per_item)
        label = f"{n_items // 1000}k x {per_item} = {items.size / 1e6:g}M"
        peer = crowdkit(items, workers, labels, ["MajorityVote", "DawidSkene"]) if with_crowdkit else {}
        for method, model, peer_name in [
            ("MV", MajorityVote(), "MajorityVote"),
            ("DS", DawidSkene(), "DawidSkene"),
            ("HDS (default)", HierarchicalDawidSkene(), "DawidSkene"),
        ]:
            ours = quorum(model, items, workers, labels, repeat=repeat, memory=True)
            if ours["chosen"][0] is not None:
                kept, selection = ours["chosen"]
                where = f"on a {selection['answers']:,}-answer subset" if selection.get("subset") else "on all answers"
                choices.append(
                    f"{label}: HDS kept the {kept} model, chosen {where} (held-out gain "
                    f"{selection.get('gain', 0.0):.5f}, SE {selection.get('se', 0.0):.5f})."
                )
            row = [
                label,
                method,
                f"{ours['wall_s']:.3f}",
                f"{ours['cpu_s']:.3f}",
                ours["n_iter"],
                f"{ours['peak_mib']:.0f}",
                f"{np.mean(ours['labels'] == truth):.4f}",
            ]
            if with_crowdkit:
                theirs = peer[peer_name]
                row += [
                    peer_name,
                    f"{theirs['wall_s']:.2f}",
                    f"{theirs['cpu_s']:.2f}",
                    theirs["n_iter"] if theirs["n_iter"] is not None else "",
                    f"{np.mean(theirs['labels'] == truth):.4f}",
                    f"{theirs['wall_s'] / ours['wall_s']:.0f}x",
                    f"{theirs['cpu_s'] / max(ours['cpu_s'], 1e-9):.0f}x",
                ]
            rows.append(row)
    header = ["synthetic (items x labels)", "method", "wall s", "cpu s", "iters", "peak MiB", "acc"]
    if with_crowdkit:
        header += ["crowd-kit", "wall s", "cpu s", "iters", "acc", "wall ratio", "cpu ratio"]
    table(
        f"6. Fit time to convergence (Quorum best of {repeat}, crowd-kit one run; 5 classes, 1,000 annotators)",
        header,
        rows,
        [
            "ratio = crowd-kit seconds / Quorum seconds; peak MiB = tracemalloc peak of one Quorum fit (NumPy and",
            "SciPy allocations, the input arrays excluded). 2 shared cores: wall times are noisy.",
            *choices,
        ],
    )


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        n_items, _, per_item = part.partition("x")
        sizes.append((int(n_items), int(per_item or 5)))
    return sizes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="200000x5", help="synthetic timing sizes, ITEMSxLABELS, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="Quorum timing: best of this many fits")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per synthetic sweep configuration")
    parser.add_argument("--datasets", type=Path, default=CROWD_DIR, help="folder of crowd sets")
    parser.add_argument("--no-crowdkit", action="store_true", help="Quorum only (no peer venv)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: real, sweep, speed")
    args = parser.parse_args(argv)
    with_crowdkit = not args.no_crowdkit
    skip = set(filter(None, args.skip.split(",")))
    if with_crowdkit:
        from crowd_kit import ensure_venv

        ensure_venv()
    if "real" not in skip:
        if args.datasets.is_dir():
            real_sets_tables(load_sets(args.datasets), with_crowdkit)
        else:
            print(f"{args.datasets} not found: skipping the real sets")
    if "sweep" not in skip:
        sweep_tables(args.seeds, with_crowdkit)
    if "speed" not in skip:
        speed_table(parse_sizes(args.sizes), args.repeat, with_crowdkit)


if __name__ == "__main__":
    main()
