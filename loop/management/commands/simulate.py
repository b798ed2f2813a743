"""``manage.py simulate``: learning curves of the real loop with simulated annotators.

Every (strategy, seed) is a project in a throwaway database (created for the run and dropped after
it, as the test runner does; ``--keep`` writes into the configured database instead, so the projects
can be opened in the app). See ``loop.simulator`` for what one run does.
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

from ...charts import line_chart
from ...simulator import RunConfig, simulate_run


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


class Command(BaseCommand):
    help = (
        "Simulate the active-learning loop on a labelled dataset with simulated annotators and write the "
        "learning curve (labels spent -> test accuracy and macro-F1) per strategy and seed."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dataset", required=True, help="folder with train.csv/test.csv, or one CSV with a split column"
        )
        parser.add_argument(
            "--strategy",
            default="random,margin",
            help=f"one or more of {','.join(Strategy.values)} (comma-separated)",
        )
        parser.add_argument("--annotators", type=int, default=3)
        parser.add_argument("--annotator-accuracy", type=float, default=1.0)
        parser.add_argument("--labels-per-item", type=int, default=1)
        parser.add_argument("--batch", type=int, default=50, help="queue batch and retrain_after")
        parser.add_argument("--budget", type=int, default=2000, help="items with a final label to stop at")
        parser.add_argument("--seeds", default="3", help="a count (0..n-1) or a comma-separated list")
        parser.add_argument("--exploration", type=float, default=0.1, help="uniform share of every batch")
        parser.add_argument("--encoder", default=None, help="sentence encoder (default QUORUM_ENCODER)")
        parser.add_argument("--out", default="curves.json")
        parser.add_argument(
            "--plot", default=None, help="also draw the mean curves: .svg (built in) or .png (needs matplotlib)"
        )
        parser.add_argument("--keep", action="store_true", help="write into the configured database")

    def handle(self, *args, **options):
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
        seeds = _seeds(options["seeds"])
        if settings.QUORUM_TORCH_THREADS:  # as a worker process does (quorum.celery)
            import torch

            torch.set_num_threads(settings.QUORUM_TORCH_THREADS)
        try:
            dataset = load_dataset(options["dataset"])
        except DatasetError as exc:
            raise CommandError(str(exc)) from None
        encoder = options["encoder"] or settings.QUORUM_ENCODER
        log = self.stdout.write
        log(
            f"dataset {dataset.name}: {len(dataset.train):,} pool texts, {len(dataset.test):,} test texts, "
            f"{len(dataset.categories)} classes; strategies {strategies}; seeds {seeds}"
        )

        cache = Path(settings.QUORUM_CACHE_DIR) / "simulate"
        train_vectors, test_vectors = dataset_embeddings(
            dataset, encoder, cache, device=settings.QUORUM_DEVICE, log=log
        )

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
                    for strategy in strategies:
                        for seed in seeds:
                            config = RunConfig(
                                strategy=strategy,
                                seed=seed,
                                annotators=options["annotators"],
                                annotator_accuracy=options["annotator_accuracy"],
                                labels_per_item=options["labels_per_item"],
                                batch=options["batch"],
                                budget=options["budget"],
                                exploration=options["exploration"],
                                encoder=encoder,
                            )
                            log(f"{strategy}, seed {seed}:")
                            started = time.perf_counter()
                            run = simulate_run(dataset, train_vectors, test_vectors, config, log=log)
                            runs.append(run.as_dict())
                            log(f"  done in {time.perf_counter() - started:.0f} s")
                finally:
                    if old_config is not None:
                        teardown_databases(old_config, verbosity=0)

        report = summarise(runs, options | {"strategies": strategies, "seeds": seeds, "encoder": encoder}, dataset)
        out = Path(options["out"])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1))
        self._print_summary(report)
        log(f"wrote {out}")
        if options["plot"]:
            plot(report, Path(options["plot"]))
            log(f"wrote {options['plot']}")

    def _print_summary(self, report: dict) -> None:
        log = self.stdout.write
        log("\nmean over seeds (labels: test accuracy / macro-F1):")
        for strategy, curve in report["mean"].items():
            cells = []
            for mark in report["checkpoints"]:
                accuracy, f1 = curves.value_at(curve, mark), curves.value_at(curve, mark, "macro_f1")
                if accuracy is not None:
                    cells.append(f"{mark:>5}: {accuracy:.4f} / {f1:.4f}")
            log(f"  {strategy:<17}" + "  ".join(cells))
        target = report["target"]
        if target["accuracy"] is not None:
            log(f"\nlabels to reach random's accuracy at {target['labels']} labels ({target['accuracy']:.4f}):")
            for strategy, n in report["labels_to_reach_target"].items():
                log(f"  {strategy:<17}{n if n is not None else 'not reached'}")


def summarise(runs: list[dict], options: dict, dataset) -> dict:
    by_strategy: dict[str, list] = {}
    for run in runs:
        by_strategy.setdefault(run["strategy"], []).append(run["points"])
    mean = {strategy: curves.mean_curve(points) for strategy, points in by_strategy.items()}
    budget = options["budget"]
    reference = mean.get("random")
    target_accuracy = curves.value_at(reference, budget) if reference else None
    checkpoints = sorted({c for c in (200, 500, 1000, 2000, budget) if c <= budget})
    return {
        "config": {
            key: options[key]
            for key in (
                "dataset",
                "strategies",
                "seeds",
                "annotators",
                "annotator_accuracy",
                "labels_per_item",
                "batch",
                "budget",
                "exploration",
                "encoder",
            )
        },
        "dataset": {
            "name": dataset.name,
            "pool": len(dataset.train),
            "test": len(dataset.test),
            "classes": len(dataset.categories),
        },
        "checkpoints": checkpoints,
        "runs": runs,
        "mean": mean,
        "target": {"strategy": "random", "labels": budget, "accuracy": target_accuracy},
        "labels_to_reach_target": {
            strategy: (curves.labels_to_reach(curve, target_accuracy) if target_accuracy is not None else None)
            for strategy, curve in mean.items()
        },
    }


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
