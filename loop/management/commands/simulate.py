"""``manage.py simulate``: learning curves of the real loop with simulated annotators.

Every (line, seed) is a project in a throwaway database (created for the run and dropped after it, as
the test runner does; ``--keep`` writes into the configured database instead, so the projects can be
opened in the app). See ``loop.simulator`` for what one run does. A line is a strategy, with
``--semi-supervised on,off`` a strategy and a head: ``msal+ssl`` (the semi-supervised head) and
``msal`` (the plain logistic head), the names ``bench/learning_curve.py`` uses.

The report (``--out``, rewritten after every run so a long run cut short keeps what it did) holds
every curve, the seed means, and the summary printed at the end: test accuracy at the checkpoints
(mean over seeds), the labels each line needs to reach the reference line's accuracy at its last
label count (``--reference``, random by default; linearly interpolated between the two points that
bracket the first crossing, on the seed-mean curve and seed by seed), and the checkpoints where a
line's mean is below the reference's. ``--merge a.json b.json`` prints that summary for runs made
apart (e.g. the reference to 2,000 labels and the others to fewer).

A dataset of tag sets (a ``labels`` column, names joined by ``|``: ``../shared/datasets/goemotions``)
runs multi-label projects: the annotators miss each true tag with ``--tag-miss-rate`` and add
``--tag-add-rate`` wrong tags per answer on average, the curves hold subset accuracy, micro- and
macro-F1, and the comparison is on macro-F1 (the figure a multi-label team reads first; subset
accuracy punishes one tag wrong out of five as much as all of them).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.test.utils import override_settings, setup_databases, teardown_databases

from acquisition import curves
from acquisition.datasets import DatasetError, dataset_embeddings, load_dataset
from annotation.models import Strategy
from quorum.vocabulary import TASK_STRATEGIES

from ...charts import line_chart
from ...simulator import RunConfig, simulate_run

CHECKPOINTS = (200, 500, 800, 1000, 1500, 2000)
SSL = "+ssl"  # the suffix of a semi-supervised line (``--semi-supervised on,off``)


def _seeds(value: str) -> list[int]:
    """``3`` → seeds 0, 1, 2; ``4,7`` → seeds 4 and 7."""
    try:
        if "," in value:
            return [int(part) for part in value.split(",") if part.strip()]
        count = int(value)
    except ValueError:
        raise CommandError(f"--seeds: expected a count or a comma-separated list, got {value!r}") from None
    if count < 1:
        raise CommandError("--seeds must be at least 1")
    return list(range(count))


def _heads(value: str | None) -> list[bool | None]:
    """``None`` → the setting (line = strategy); ``on`` / ``off`` / ``on,off`` → those heads."""
    if value is None:
        return [None]
    modes = [m.strip() for m in value.split(",") if m.strip()]
    if not modes or set(modes) - {"on", "off"}:
        raise CommandError("--semi-supervised takes on, off or on,off")
    return [m == "on" for m in dict.fromkeys(modes)]


def line_name(strategy: str, semi_supervised: bool | None) -> str:
    """The curve's name: the strategy, with ``+ssl`` for the semi-supervised head when heads are compared."""
    return strategy if semi_supervised is None else strategy + (SSL if semi_supervised else "")


class Command(BaseCommand):
    help = (
        "Simulate the active-learning loop on a labelled dataset with simulated annotators and write the "
        "learning curve (labels spent -> test accuracy and macro-F1) per strategy and seed."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dataset", help="folder with train.csv/test.csv, or one CSV with a split column (required unless --merge)"
        )
        parser.add_argument(
            "--strategy",
            default="random,margin",
            help=f"one or more of {','.join(Strategy.values)} (comma-separated)",
        )
        parser.add_argument(
            "--annotators", type=int, default=3, help="simulated annotators (default 3, all right every time)"
        )
        parser.add_argument(
            "--annotator-accuracy", type=float, default=1.0, help="chance each answer is right (default 1.0)"
        )
        parser.add_argument("--labels-per-item", type=int, default=1)
        parser.add_argument(
            "--tag-miss-rate",
            type=float,
            default=0.0,
            help="multi-label datasets: chance an annotator leaves out each true tag (default 0)",
        )
        parser.add_argument(
            "--tag-add-rate",
            type=float,
            default=0.0,
            help="multi-label datasets: wrong tags an annotator adds per answer, on average (default 0)",
        )
        parser.add_argument("--batch", type=int, default=50, help="queue batch (and retrain_after unless given)")
        parser.add_argument(
            "--retrain-after",
            type=int,
            default=None,
            help="labels between retrains, hence between the curve's points (default: --batch); random picks "
            "the same way whatever it is, so a reference curve can be measured more cheaply",
        )
        parser.add_argument("--budget", type=int, default=2000, help="items with a final label to stop at")
        parser.add_argument("--seeds", default="3", help="a count (0..n-1) or a comma-separated list")
        parser.add_argument("--exploration", type=float, default=0.1, help="uniform share of every batch")
        parser.add_argument("--encoder", default=None, help="sentence encoder (default QUORUM_ENCODER)")
        parser.add_argument(
            "--semi-supervised",
            default=None,
            help="on, off or on,off: run every strategy with that head (lines X+ssl and X); "
            "default: QUORUM_SEMI_SUPERVISED, lines named by strategy",
        )
        parser.add_argument(
            "--label-error-cap",
            type=int,
            default=0,
            help="QUORUM_LABEL_ERROR_CAP for the runs (default 0: the check only opens reviews nobody decides "
            "here and changes no label; 20 times it as the app runs it)",
        )
        parser.add_argument(
            "--reference", default="random", help="the line whose accuracy at its last label count is the target"
        )
        parser.add_argument("--out", default="curves.json")
        parser.add_argument(
            "--plot", default=None, help="also draw the mean curves: .svg (built in) or .png (needs matplotlib)"
        )
        parser.add_argument("--keep", action="store_true", help="write into the configured database")
        parser.add_argument(
            "--merge",
            nargs="+",
            default=None,
            metavar="REPORT",
            help="print the summary of these --out files together (runs nothing)",
        )

    def handle(self, *args, **options):
        if options["merge"]:
            report = merge_reports([Path(p) for p in options["merge"]], reference=options["reference"])
            self.stdout.write(format_summary(report))
            return
        if not options["dataset"]:
            raise CommandError("--dataset is required (or --merge)")
        strategies = [s.strip() for s in options["strategy"].split(",") if s.strip()]
        unknown = [s for s in strategies if s not in Strategy.values]
        if unknown:
            raise CommandError(f"--strategy: unknown {unknown}; choose from {Strategy.values}")
        if not 0.0 <= options["annotator_accuracy"] <= 1.0:
            raise CommandError("--annotator-accuracy must be between 0 and 1")
        if options["labels_per_item"] < 1 or options["labels_per_item"] > options["annotators"]:
            raise CommandError("--labels-per-item must be between 1 and --annotators")
        if options["batch"] < 1 or options["budget"] < options["batch"]:
            raise CommandError("--batch must be at least 1 and --budget at least --batch")
        if not 0.0 <= options["exploration"] <= 1.0:
            raise CommandError("--exploration must be between 0 and 1")
        if options["retrain_after"] is not None and options["retrain_after"] < 1:
            raise CommandError("--retrain-after must be at least 1")
        if options["label_error_cap"] < 0:
            raise CommandError("--label-error-cap must be 0 or more")
        if not 0.0 <= options["tag_miss_rate"] <= 1.0 or options["tag_add_rate"] < 0:
            raise CommandError("--tag-miss-rate must be between 0 and 1 and --tag-add-rate at least 0")
        heads = _heads(options["semi_supervised"])
        seeds = _seeds(options["seeds"])
        if settings.QUORUM_TORCH_THREADS:  # as a worker process does (quorum.celery)
            import torch

            torch.set_num_threads(settings.QUORUM_TORCH_THREADS)
        try:
            dataset = load_dataset(options["dataset"])
        except DatasetError as exc:
            raise CommandError(str(exc)) from None
        task_type = "multi_label" if dataset.multi_label else "text_classification"
        refused = [s for s in strategies if s not in TASK_STRATEGIES[task_type]]
        if refused:
            raise CommandError(
                f"--strategy: {refused} not offered for {task_type} data; choose from {TASK_STRATEGIES[task_type]}"
            )
        encoder = options["encoder"] or settings.QUORUM_ENCODER
        lines = [line_name(strategy, head) for strategy in strategies for head in heads]
        log = self.stdout.write
        log(
            f"dataset {dataset.name}: {len(dataset.train):,} pool texts, {len(dataset.test):,} test texts, "
            f"{len(dataset.categories)} classes; lines {lines}; seeds {seeds}; {options['annotators']} annotators "
            f"right {options['annotator_accuracy']:.0%} of the time, {options['labels_per_item']} label(s) per item"
        )

        cache = Path(settings.QUORUM_CACHE_DIR) / "simulate"
        train_vectors, test_vectors = dataset_embeddings(
            dataset, encoder, cache, device=settings.QUORUM_DEVICE, log=log
        )

        out = Path(options["out"])
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = options | {"strategies": strategies, "lines": lines, "seeds": seeds, "encoder": encoder}
        runs = []
        with tempfile.TemporaryDirectory(prefix="quorum-simulate-") as scratch:
            overrides = {
                "QUORUM_CACHE_DIR": Path(scratch) / "cache",
                "QUORUM_SCORING_CHUNK": 10**9,  # one chunk: scored inline by the in-process worker
            }
            if not options["keep"]:
                overrides["MEDIA_ROOT"] = Path(scratch) / "media"
            with override_settings(**overrides):
                old_config = None if options["keep"] else setup_databases(verbosity=0, interactive=False)
                try:
                    # seed by seed, so every line has the same seeds done when a long run is cut short
                    for seed in seeds:
                        for strategy in strategies:
                            for head in heads:
                                config = RunConfig(
                                    strategy=strategy,
                                    seed=seed,
                                    annotators=options["annotators"],
                                    annotator_accuracy=options["annotator_accuracy"],
                                    labels_per_item=options["labels_per_item"],
                                    batch=options["batch"],
                                    retrain_after=options["retrain_after"],
                                    budget=options["budget"],
                                    exploration=options["exploration"],
                                    encoder=encoder,
                                    semi_supervised=head,
                                    label_error_cap=options["label_error_cap"],
                                    line=line_name(strategy, head),
                                    tag_miss_rate=options["tag_miss_rate"],
                                    tag_add_rate=options["tag_add_rate"],
                                )
                                log(f"{config.line}, seed {seed}:")
                                started = time.perf_counter()
                                run = simulate_run(dataset, train_vectors, test_vectors, config, log=log)
                                runs.append(run.as_dict())
                                log(f"  done in {time.perf_counter() - started:.0f} s")
                                report = summarise(runs, meta, dataset, reference=options["reference"])
                                out.write_text(json.dumps(report, indent=1))
                finally:
                    if old_config is not None:
                        teardown_databases(old_config, verbosity=0)

        report = summarise(runs, meta, dataset, reference=options["reference"])
        out.write_text(json.dumps(report, indent=1))
        log(format_summary(report))
        log(f"wrote {out}")
        if options["plot"]:
            plot(report, Path(options["plot"]))
            log(f"wrote {options['plot']}")


# ------------------------------------------------------------------------------------------ summary
def labels_to_reach(curve: list[dict], target: float, key: str = "accuracy") -> float | None:
    """The labels at which ``curve`` first reaches ``target``, linearly interpolated between the last
    point under it and the first at or above it (the first point's labels when it already is;
    ``None`` when no point reaches it)."""
    previous = None
    for point in curve:
        value = point.get(key)
        if value is None:
            continue
        if value >= target:
            if previous is None or value == previous[1]:
                return float(point["labels"])
            x0, y0 = previous
            return float(x0 + (target - y0) * (point["labels"] - x0) / (value - y0))
        previous = (point["labels"], value)
    return None


def summarise(runs: list[dict], options: dict, dataset, *, reference: str = "random") -> dict:
    """The report: config, dataset, every run, the seed-mean curve per line, and the comparison with
    the reference line (``compare``)."""
    report = {
        "config": {
            key: options.get(key)
            for key in (
                "dataset",
                "strategies",
                "lines",
                "seeds",
                "annotators",
                "annotator_accuracy",
                "labels_per_item",
                "batch",
                "retrain_after",
                "budget",
                "exploration",
                "encoder",
                "semi_supervised",
                "label_error_cap",
                "tag_miss_rate",
                "tag_add_rate",
            )
        },
        "dataset": {
            "name": dataset.name,
            "pool": len(dataset.train),
            "test": len(dataset.test),
            "classes": len(dataset.categories),
            "multi_label": bool(getattr(dataset, "multi_label", False)),
        },
        "runs": runs,
    }
    metric = "macro_f1" if report["dataset"]["multi_label"] else "accuracy"
    return report | compare(runs, reference=reference, metric=metric)


def compare(runs: list[dict], *, reference: str = "random", metric: str = "accuracy") -> dict:
    """Seed means and the comparison with ``reference``: the target is the reference's seed-mean
    ``metric`` (accuracy; macro-F1 for tag sets) at its last label count; per line, the labels to reach
    it (interpolated) on the mean curve, per seed and their mean (``None`` when a seed never does), the
    checkpoints (those every seed of the line reached) where its mean is below the reference's, and
    whether it never is."""
    by_line: dict[str, list[dict]] = {}
    for run in runs:
        by_line.setdefault(run.get("line") or run["strategy"], []).append(run)
    mean = {line: curves.mean_curve([r["points"] for r in group]) for line, group in by_line.items()}
    ref = mean.get(reference) or []
    target_labels = ref[-1]["labels"] if ref else None
    target_accuracy = ref[-1][metric] if ref else None
    last = max((c[-1]["labels"] for c in mean.values() if c), default=0)
    checkpoints = [c for c in CHECKPOINTS if c <= last]
    if last and last not in checkpoints and last > max(checkpoints, default=0):
        checkpoints.append(last)
    lines = {}
    for line, group in by_line.items():
        curve = mean[line]
        reached = curve[-1]["labels"] if curve else 0
        at = {c: curves.value_at(curve, c) for c in checkpoints if c <= reached}
        below = []
        if ref and line != reference:
            below = [
                c
                for c in at
                if c <= target_labels
                and (mine := curves.value_at(curve, c, metric)) is not None
                and mine < curves.value_at(ref, c, metric) - 1e-12
            ]
        entry = {
            "seeds": [r["seed"] for r in group],
            "last_labels": reached,
            "accuracy_at": {str(c): v for c, v in at.items()},
            "macro_f1_at": {str(c): curves.value_at(curve, c, "macro_f1") for c in at},
            "below_reference_at": below,
            "never_below_reference": (not below) if ref and line != reference else None,
        }
        if target_accuracy is not None:
            per_seed = [labels_to_reach(r["points"], target_accuracy, metric) for r in group]
            entry["labels_to_target"] = labels_to_reach(curve, target_accuracy, metric)
            entry["labels_to_target_per_seed"] = per_seed
            entry["labels_to_target_seed_mean"] = (
                None if any(v is None for v in per_seed) else float(sum(per_seed) / len(per_seed))
            )
        lines[line] = entry
    return {
        "checkpoints": checkpoints,
        "mean": mean,
        "metric": metric,
        # ``accuracy``: the target value in ``metric`` (the key older readers know)
        "target": {"line": reference, "labels": target_labels, "accuracy": target_accuracy, "metric": metric},
        "lines": lines,
        # the labels to reach the target on each seed-mean curve (kept for earlier readers)
        "labels_to_reach_target": {line: entry.get("labels_to_target") for line, entry in lines.items()},
    }


def _labels(value: float | None) -> str:
    return "not reached" if value is None else f"{round(value):,}"


def format_summary(report: dict) -> str:
    """The printed summary (module docstring)."""
    lines_out = []
    checkpoints = report["checkpoints"]
    width = max([18, *(len(name) + 2 for name in report["lines"])])
    metric = report.get("metric", "accuracy")
    words = {"accuracy": "accuracy", "macro_f1": "macro-F1"}[metric]
    other = "macro-F1" if metric == "accuracy" else "subset accuracy and micro-F1"
    lines_out.append(f"\ntest {words}, mean over seeds ({other} in the JSON):")
    lines_out.append(f"{'line':<{width}}" + "".join(f"{f'@{c}':>9}" for c in checkpoints) + "   seeds")
    for name, entry in report["lines"].items():
        cells = [entry[f"{metric}_at"].get(str(c)) for c in checkpoints]
        lines_out.append(
            f"{name:<{width}}"
            + "".join(f"{v:>9.4f}" if v is not None else f"{'-':>9}" for v in cells)
            + f"   {len(entry['seeds'])}"
        )
    target = report["target"]
    if target["accuracy"] is None:
        lines_out.append(f"\n(no {target['line']!r} line: no target, no comparison)")
        return "\n".join(lines_out)
    lines_out.append(
        f"\nlabels to reach {target['line']}@{target['labels']:,} {words} ({target['accuracy']:.4f}), "
        "interpolated; and the checkpoints where a line's mean is below it:"
    )
    lines_out.append(
        f"{'line':<{width}}{'mean curve':>12}{'seed mean':>12}   per seed{'':<22}vs {target['line']} at checkpoints"
    )
    for name, entry in report["lines"].items():
        per_seed = ", ".join(_labels(v) for v in entry["labels_to_target_per_seed"])
        if name == target["line"]:
            verdict = "(reference)"
        elif entry["below_reference_at"]:
            verdict = "below at checkpoints " + ", ".join(f"@{c}" for c in entry["below_reference_at"])
        else:
            verdict = ">= at every checkpoint"
        lines_out.append(
            f"{name:<{width}}{_labels(entry['labels_to_target']):>12}"
            f"{_labels(entry['labels_to_target_seed_mean']):>12}   {per_seed:<30}{verdict}"
        )
    return "\n".join(lines_out)


def merge_reports(paths: list[Path], *, reference: str = "random") -> dict:
    """One report from several ``--out`` files (their runs together; config and dataset of the first)."""
    if not paths:
        raise CommandError("--merge needs at least one report")
    runs, first = [], None
    for path in paths:
        try:
            payload = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"--merge: cannot read {path}: {exc}") from None
        first = first or payload
        runs.extend(payload.get("runs", []))
    metric = "macro_f1" if (first.get("dataset") or {}).get("multi_label") else "accuracy"
    return {"config": first.get("config"), "dataset": first.get("dataset"), "runs": runs} | compare(
        runs, reference=reference, metric=metric
    )


def plot(report: dict, path: Path) -> None:
    """The mean curves: an SVG drawn here (``.svg``), or a PNG with matplotlib when it is installed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".svg":
        charts = [
            line_chart(
                [
                    {"name": strategy, "points": [(p["labels"], p[key]) for p in curve]}
                    for strategy, curve in report["mean"].items()
                ],
                title=f"test {name} against labels ({report['dataset']['name']})",
                x_label="labels",
                y_label=f"test {name}",
                y_range=(0.0, 1.0),
            )
            for key, name in (("accuracy", "accuracy"), ("macro_f1", "macro-F1"))
        ]
        path.write_text(
            '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1280 280" width="1280" height="280">'
            f'<svg x="0" width="640" height="280">{charts[0]}</svg><svg x="640" width="640" height="280">{charts[1]}</svg></svg>',
            encoding="utf-8",
        )
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CommandError(
            "a PNG plot needs matplotlib (pip install matplotlib); --plot curves.svg needs nothing"
        ) from None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for strategy, curve in report["mean"].items():
        xs = [p["labels"] for p in curve]
        for ax, key in zip(axes, ("accuracy", "macro_f1"), strict=True):
            ax.plot(xs, [p[key] for p in curve], label=strategy)
    for ax, title in zip(axes, ("test accuracy", "test macro-F1"), strict=True):
        ax.set_xlabel("labels")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path)
