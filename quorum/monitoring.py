"""Liveness, readiness and Prometheus metrics.

* ``/healthz``: the process answers (no dependency is checked: a load balancer restarts what fails it).
* ``/readyz``: the database answers ``SELECT 1`` and the Celery broker accepts a connection, each
  within ``QUORUM_READY_TIMEOUT`` seconds; 200 with ``{"database": "ok", "broker": "ok"}`` or 503 with
  the error of each check that failed.
* ``/metrics``: Prometheus text format. Request rate, errors and latency per view come from
  django-prometheus' middleware (with ``PROMETHEUS_MULTIPROC_DIR`` set, the figures of every gunicorn
  worker process are merged); the loop's figures are read from the database at scrape time by
  :class:`LoopCollector`: queue depth and open review tasks per project, annotations in the last
  minute and in total, items by status, active jobs, and the Celery task counters every worker
  records (``acquisition.models.TaskStat``). With ``QUORUM_METRICS_TOKEN`` set, a scrape must send
  ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import os
import threading
from datetime import timedelta

import prometheus_client
from django.conf import settings
from django.db import connection
from django.db.models import Count, F, Q, Sum
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from acquisition.models import ScoringRun, TaskStat, TrainingJob
from annotation.models import Annotation, IngestBatch, Item, QueueEntry, ReviewTask

from .celery import app


@never_cache
@require_safe
def healthz(request):
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_broker() -> None:
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=settings.QUORUM_READY_TIMEOUT)


def _check_broker_in_time() -> None:
    """The broker check in a thread of its own, given ``QUORUM_READY_TIMEOUT`` seconds: a broker that
    accepts connections but never answers (frozen, half-open) cannot hold the probe beyond that. The
    thread ends by itself with the socket timeouts of the settings (``QUORUM_BROKER_TIMEOUT``)."""
    result: dict = {}

    def run() -> None:
        try:
            _check_broker()
            result["ok"] = True
        except Exception as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, name="readyz-broker", daemon=True)
    thread.start()
    thread.join(settings.QUORUM_READY_TIMEOUT)
    if "error" in result:
        raise result["error"]
    if not result.get("ok"):
        raise TimeoutError(f"no answer within {settings.QUORUM_READY_TIMEOUT} s")


@never_cache
@require_safe
def readyz(request):
    checks, ok = {}, True
    for name, check in (("database", _check_database), ("broker", _check_broker_in_time)):
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:  # any failure means "not ready", with what failed
            ok = False
            checks[name] = f"{type(exc).__name__}: {exc}"[:500]
    return JsonResponse(checks, status=200 if ok else 503)


class LoopCollector:
    """The loop's gauges and counters, read from the database at each scrape (a handful of grouped
    queries, whatever the number of projects)."""

    def collect(self):
        depth = GaugeMetricFamily(
            "quorum_queue_open_slots",
            "Open annotation slots in the queue per project: labels still needed minus labels taken "
            "(live leases and annotations), summed over the entries with room left",
            labels=["project"],
        )
        for row in (
            QueueEntry.objects.filter(labels_taken__lt=F("labels_needed"))
            .values("project_id")
            .annotate(slots=Sum(F("labels_needed") - F("labels_taken")))
            .order_by()
        ):
            depth.add_metric([str(row["project_id"])], row["slots"])
        yield depth

        reviews = GaugeMetricFamily(
            "quorum_review_tasks_open", "Open expert-review tasks per project", labels=["project"]
        )
        for row in ReviewTask.objects.filter(status="open").values("project_id").annotate(n=Count("id")).order_by():
            reviews.add_metric([str(row["project_id"])], row["n"])
        yield reviews

        items = GaugeMetricFamily("quorum_items", "Items per project and status", labels=["project", "status"])
        for row in Item.objects.values("project_id", "status").annotate(n=Count("id")).order_by():
            items.add_metric([str(row["project_id"]), row["status"]], row["n"])
        yield items

        since = timezone.now() - timedelta(minutes=1)
        recent = GaugeMetricFamily(
            "quorum_annotations_last_minute", "Annotations created in the last minute per project", labels=["project"]
        )
        total = CounterMetricFamily("quorum_annotations", "Annotations stored per project", labels=["project"])
        for row in (
            Annotation.objects.values("project_id")
            .annotate(n=Count("id"), recent=Count("id", filter=Q(created_at__gte=since)))
            .order_by()
        ):
            recent.add_metric([str(row["project_id"])], row["recent"])
            total.add_metric([str(row["project_id"])], row["n"])
        yield recent
        yield total

        jobs = GaugeMetricFamily("quorum_jobs_active", "Pending or running background jobs", labels=["kind"])
        jobs.add_metric(["scoring"], ScoringRun.objects.filter(status__in=ScoringRun.ACTIVE).count())
        jobs.add_metric(["training"], TrainingJob.objects.filter(status__in=TrainingJob.ACTIVE).count())
        jobs.add_metric(["ingest"], IngestBatch.objects.filter(status=IngestBatch.Status.RECEIVED).count())
        yield jobs

        runs = CounterMetricFamily(
            "quorum_celery_tasks", "Celery tasks finished, by outcome", labels=["task", "outcome"]
        )
        seconds = CounterMetricFamily(
            "quorum_celery_task_seconds", "Seconds spent in Celery tasks, by outcome", labels=["task", "outcome"]
        )
        slowest = GaugeMetricFamily(
            "quorum_celery_task_seconds_max", "Longest run of a Celery task", labels=["task", "outcome"]
        )
        for stat in TaskStat.objects.all():
            key = [stat.task, stat.outcome]
            runs.add_metric(key, stat.count)
            seconds.add_metric(key, stat.seconds_sum)
            slowest.add_metric(key, stat.seconds_max)
        yield runs
        yield seconds
        yield slowest


_LOOP_REGISTRY = prometheus_client.CollectorRegistry(auto_describe=False)
_LOOP_REGISTRY.register(LoopCollector())


def _process_registry():
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return prometheus_client.REGISTRY


@never_cache
@require_safe
def metrics(request):
    token = settings.QUORUM_METRICS_TOKEN
    if token:
        sent = request.headers.get("Authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            return HttpResponse("a metrics token is required\n", status=401, content_type="text/plain")
    body = prometheus_client.generate_latest(_process_registry()) + prometheus_client.generate_latest(_LOOP_REGISTRY)
    return HttpResponse(body, content_type=prometheus_client.CONTENT_TYPE_LATEST)
