#!/usr/bin/env python
"""One turn of the loop on a large pool: aggregation → retrain trigger → training job (train, evaluate,
gate, re-score the whole pool, replace the queue), timed stage by stage.

    .venv/bin/python bench/retrain_cycle.py [--items 100000] [--labels 2000] [--new 100]
                                            [--strategy msal] [--database sqlite,postgres]
                                            [--semi-supervised on,off]

The pool is built from real embeddings: banking77's 10,003 MiniLM vectors (encoded once and cached
under var/cache/) tiled with small Gaussian noise up to ``--items`` (without ../shared: random unit
vectors around 77 centres). ``--labels`` items get final labels (10% marked as the exploration sample,
so the evaluation set is unbiased) and a first model is trained; then ``--new`` more labels land, the
aggregation task runs and its retrain trigger starts the job that is timed: the full cycle as a worker
runs it, in this process (an in-process worker), on a throwaway database created like the test
runner's. Each database runs in its own child process (settings are read at start-up).

``--semi-supervised on,off`` times the cycle with the semi-supervised head (the default: label spreading
over up to ``QUORUM_SEMI_SUPERVISED_MAX_UNLABELLED`` unlabelled items, distilled into the head) and with
the plain logistic head, each in its own child; the head line says what the job chose and how long
its k-nearest-neighbour graph took.
"""

from __future__ import annotations

import argparse
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

PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432") + "/quorum_bench"


def pool_vectors(n: int, seed: int = 0):
    import numpy as np
    from banking77 import banking77_available, cached_embeddings, load_banking77

    rng = np.random.default_rng(seed)
    if banking77_available():
        data = load_banking77()
        base, _ = cached_embeddings(data, log=lambda message: print(message, file=sys.stderr))
        labels = data.train.labels
    else:
        centres = rng.normal(size=(77, 384)).astype(np.float32)
        labels = rng.integers(0, 77, 10_000)
        base = centres[labels] + rng.normal(scale=0.8, size=(10_000, 384)).astype(np.float32)
    index = np.resize(np.arange(len(base)), n)
    vectors = base[index] + rng.normal(scale=0.02, size=(n, base.shape[1])).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), labels[index], 77


def child(args) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quorum.settings")
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.conf import settings

    settings.QUORUM_SEMI_SUPERVISED = args.semi_supervised == "on"
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases
    from django.utils import timezone

    from acquisition.models import ModelVersion, TrainingJob
    from annotation import services
    from annotation.ingest_records import CleanRecord, text_digest
    from annotation.models import AgreementSnapshot, Item, ItemStatus, LabelSource, QueueEntry
    from annotation.services.projects import LabelSpec
    from loop.services import training
    from loop.simulator import InProcessWorker
    from loop.tasks import project_aggregate_task

    vectors, truth, n_classes = pool_vectors(args.items)
    old = setup_databases(verbosity=0, interactive=False)
    report = {
        "database": connection.vendor,
        "items": args.items,
        "labels": args.labels,
        "new": args.new,
        "semi_supervised": args.semi_supervised,
    }
    try:
        admin = get_user_model().objects.create_user("bench", is_staff=True)
        project = services.project_create(
            user=admin,
            name="retrain cycle",
            labels=[LabelSpec(f"intent_{c}") for c in range(n_classes)],
            acquisition_strategy=args.strategy,
            embedding_dim=vectors.shape[1],
            retrain_after=args.new,
        )
        with InProcessWorker() as worker:
            started = time.perf_counter()
            records = [
                CleanRecord(i, f"x-{i}", f"text {i}", text_digest(f"text {i}"), {}, vectors[i].astype("<f4").tobytes())
                for i in range(args.items)
            ]
            services.items_ingest(project=project, records=records, rejected=[], fmt="json", user=admin)
            report["ingest_s"] = time.perf_counter() - started
            started = time.perf_counter()
            worker.run_until_idle()  # ingest follow-up + the cold-start scoring run
            report["cold_start_s"] = time.perf_counter() - started

            ids = np.fromiter(
                Item.objects.filter(project=project).order_by("pk").values_list("pk", flat=True), np.int64
            )
            label_ids = list(project.labels.order_by("order", "pk").values_list("pk", flat=True))
            rng = np.random.default_rng(1)
            chosen = rng.choice(len(ids), args.labels + args.new, replace=False)

            def finalise(rows, exploration_share=0.1):
                now = timezone.now()
                items = []
                for j in rows:
                    items.append(
                        Item(
                            pk=int(ids[j]),
                            final_label_id=label_ids[int(truth[j])],
                            final_confidence=1.0,
                            final_source=LabelSource.CONSENSUS,
                            status=ItemStatus.FINALIZED,
                            finalized_at=now,
                            selected_as="exploration" if rng.random() < exploration_share else "acquisition",
                        )
                    )
                fields = ["final_label_id", "final_confidence", "final_source", "status", "finalized_at", "selected_as"]
                Item.objects.bulk_update(items, fields, batch_size=1000)
                QueueEntry.objects.filter(item_id__in=[int(ids[j]) for j in rows]).delete()

            finalise(chosen[: args.labels])
            job = training.training_job_request(project=project, trigger="manual")
            worker.pending.clear()
            training.training_job_execute(job.pk)
            job.refresh_from_db()
            report["first_job"] = job.timings

            # The measured cycle: new labels land, the aggregation runs, its trigger starts the job.
            finalise(chosen[args.labels :])
            started = time.perf_counter()
            project_aggregate_task.apply(args=(project.pk,), throw=True)
            report["aggregate_s"] = time.perf_counter() - started
            worker.run_until_idle()
            report["cycle_s"] = time.perf_counter() - started
            job = TrainingJob.objects.filter(project=project).order_by("-pk").first()
            version = job.model_version
            report.update(
                job=job.timings,
                job_status=job.status,
                outcome=job.outcome,
                version=version.version,
                n_train=version.n_train,
                n_eval=version.n_eval,
                eval_accuracy=(version.metrics.get("eval") or {}).get("accuracy"),
                gate=version.decision,
                queue=QueueEntry.objects.filter(project=project).count(),
                snapshots=AgreementSnapshot.objects.filter(project=project).count(),
                current=ModelVersion.objects.get(project=project, status="current").version,
                head=version.hyperparameters.get("head"),
            )
    finally:
        teardown_databases(old, verbosity=0)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--labels", type=int, default=2000)
    parser.add_argument("--new", type=int, default=100)
    parser.add_argument("--strategy", default="msal")
    parser.add_argument("--database", default="sqlite,postgres")
    parser.add_argument("--semi-supervised", default="on", help="on, off or on,off: the head(s) to time")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return

    rows = []
    modes = [m.strip() for m in args.semi_supervised.split(",") if m.strip()]
    if not modes or set(modes) - {"on", "off"}:
        parser.error("--semi-supervised takes on, off or on,off")
    databases = [d.strip() for d in args.database.split(",") if d.strip()]
    for database, mode in [(d, m) for d in databases for m in modes]:
        with tempfile.TemporaryDirectory(prefix="quorum-bench-") as scratch:
            env = {**os.environ, "QUORUM_DATA_DIR": scratch, "DEBUG": "1", "LOG_LEVEL": "WARNING"}
            env.pop("CELERY_BROKER_URL", None)
            if database == "postgres":
                env["DATABASE_URL"] = PG_URL
            else:
                env.pop("DATABASE_URL", None)
            command = [sys.executable, __file__, "--child", *sys.argv[1:], "--semi-supervised", mode]
            result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
            if result.returncode != 0:
                raise SystemExit(f"{database} run failed:\n{result.stdout}\n{result.stderr}")
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))

    print(
        f"\nOne retrain-and-refill cycle, {args.items:,} items, {args.labels:,} labels + {args.new} new, {args.strategy}"
    )
    print("database  semi   aggregate  train  evaluate  gate  re-score  label errors  cycle total   outcome")
    for row in rows:
        job = row["job"]
        print(
            f"{row['database']:<8}  {row['semi_supervised']:<4}  {row['aggregate_s']:8.2f}s {job.get('train', 0):5.2f}s {job.get('evaluate', 0):8.2f}s "
            f"{job.get('promote', 0):5.2f}s {job.get('score', 0):8.2f}s {job.get('label_errors', 0):12.2f}s "
            f"{row['cycle_s']:10.2f}s   "
            f"v{row['version']} {row['outcome']} ({row['n_train']} train + {row['n_eval']} held out, "
            f"eval accuracy {row['eval_accuracy']:.3f}); queue {row['queue']}"
        )
        print(
            f"            (set-up: ingest {row['ingest_s']:.1f}s, cold start {row['cold_start_s']:.1f}s; first job {row['first_job']})"
        )
        print(f"            head: {row['head']}")


if __name__ == "__main__":
    main()
