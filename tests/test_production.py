"""The production profile, as the README runs it: gunicorn (two processes, multi-process metrics) in
front of PostgreSQL, and two Celery workers on Redis or RabbitMQ, one on the ``default`` queue and one
on the ``gpu`` queue. Over HTTP only: create a project, push a pool, annotators label through the API,
aggregation, retraining, a promoted model and a refilled queue; ``/readyz`` and ``/metrics``.

Runs when the suite runs against PostgreSQL and a networked broker (CI's first pass); skipped on the
embedded default (SQLite and the filesystem broker), which other tests cover."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection

from .worker import ROOT, celery_worker, database_url_for_current_connection, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

TEMPLATES = {
    "refund": "please refund order {i} money back for purchase",
    "card_lost": "my card {i} was lost or stolen block card",
    "other": "what time do branches open on day {i}",
}


def production_ready() -> str | None:
    if connection.vendor != "postgresql":
        return "the production profile runs on PostgreSQL (set DATABASE_URL=postgres://...)"
    if not settings.CELERY_BROKER_URL.startswith(("redis://", "amqp://", "rediss://", "amqps://")):
        return "the production profile runs on Redis or RabbitMQ (set CELERY_BROKER_URL)"
    return None


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def production_env(data_dir: Path) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "quorum.settings",
        "DEBUG": "0",
        "SECRET_KEY": "production-profile-test-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_COOKIES": "0",
        "DATABASE_URL": database_url_for_current_connection(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "QUORUM_DATA_DIR": str(data_dir),
        "QUORUM_AGGREGATION_DELAY_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
    }


@contextmanager
def gunicorn(env: dict, log_dir: Path):
    port = free_port()
    metrics_dir = log_dir / "prometheus"
    metrics_dir.mkdir()
    env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "GUNICORN_BIND": f"127.0.0.1:{port}"}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"], cwd=ROOT, env=env, check=True
    )
    log_path = log_dir / "gunicorn.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "quorum.wsgi", "-c", "python:quorum.gunicorn_conf", "--workers", "2"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def up():
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{log_path.read_text()}")
            try:
                return requests.get(f"{base}/healthz", timeout=2).status_code == 200
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or a worker still booting
                return False

        wait_for(up, timeout=60, what="gunicorn")
        yield base, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_production_profile_end_to_end_over_http(make_user, tmp_path):
    reason = production_ready()
    if reason:
        pytest.skip(reason)
    from rest_framework.authtoken.models import Token

    from annotation import services
    from annotation.models import Role

    admin = make_user("prod-admin", staff=True)
    annotators = [make_user(f"prod-ann{i}") for i in range(2)]
    tokens = {user.username: Token.objects.create(user=user).key for user in [admin, *annotators]}
    env = production_env(tmp_path / "data")

    with ExitStack() as stack:
        base, web_log = stack.enter_context(gunicorn(env, tmp_path))
        _, default_log = stack.enter_context(celery_worker(tmp_path, queues="default", env=env))
        _, gpu_log = stack.enter_context(celery_worker(tmp_path, queues="gpu", env=env))

        def api(user, method, path, **kwargs):
            headers = {"Authorization": f"Token {tokens[user.username]}"}
            response = requests.request(method, f"{base}/api/v1{path}", headers=headers, timeout=30, **kwargs)
            assert response.status_code < 500, f"{method} {path}: {response.status_code}\n{response.text[:2000]}"
            return response

        def logs():
            return "\n".join(p.read_text()[-4000:] for p in (web_log, default_log, gpu_log))

        ready = requests.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json() == {"database": "ok", "broker": "ok"}, ready.text

        created = api(
            admin,
            "POST",
            "/projects",
            json={
                "name": "Production profile",
                "labels": list(TEMPLATES),
                "encoder": "hashing:64",
                "embedding_dim": 64,
                "batch_size": 10,
                "labels_per_item": 2,
                "retrain_after": 10,
                "acquisition_strategy": "margin",
            },
        )
        assert created.status_code == 201, created.text
        project_id = created.json()["id"]
        for user in annotators:
            services.membership_set(project=_project(project_id), username=user.username, role=Role.ANNOTATOR)
        pool = [
            {"external_id": f"{label}-{i}", "text": template.format(i=i)}
            for i in range(40)
            for label, template in TEMPLATES.items()
        ]
        assert api(admin, "POST", f"/projects/{project_id}/items", json=pool).status_code == 201

        def queue_ready():
            runs = api(admin, "GET", f"/projects/{project_id}/scoring-runs").json()["results"]
            return any(run["status"] == "succeeded" for run in runs)

        wait_for(queue_ready, timeout=120, what=f"the first scoring run (embedding on the gpu worker)\n{logs()}")

        def label_some():
            for user in annotators:
                answer = api(user, "POST", f"/projects/{project_id}/next", json={}).json()
                assignment = answer["assignment"]
                if assignment is None:
                    continue
                truth = assignment["item"]["external_id"].rsplit("-", 1)[0]
                done = api(user, "POST", f"/assignments/{assignment['id']}/annotation", json={"label": truth})
                assert done.status_code == 201, done.text
            detail = api(admin, "GET", f"/projects/{project_id}").json()
            return detail["item_counts"].get("finalized", 0) >= 10

        wait_for(label_some, timeout=180, interval=0.05, what=f"10 final labels\n{logs()}")

        def trained():
            jobs = api(admin, "GET", f"/projects/{project_id}/training-jobs").json()["results"]
            return next((job for job in jobs if job["status"] in ("succeeded", "failed")), None)

        job = wait_for(trained, timeout=180, what=f"a finished training job\n{logs()}")
        assert job["status"] == "succeeded" and job["outcome"] == "promoted", job
        versions = api(admin, "GET", f"/projects/{project_id}/model-versions").json()["results"]
        assert versions[0]["status"] == "current" and versions[0]["version"] == 1
        runs = api(admin, "GET", f"/projects/{project_id}/scoring-runs").json()["results"]
        assert any(run["trigger"] == "retrain" and run["model_version_number"] == 1 for run in runs)
        nxt = api(annotators[0], "POST", f"/projects/{project_id}/next", json={"suggest": True}).json()
        assert nxt["assignment"] is not None and nxt["assignment"]["reason"] in ("acquisition", "exploration")

        export = requests.get(
            f"{base}/api/v1/projects/{project_id}/export?format=jsonl",
            headers={"Authorization": f"Token {tokens[admin.username]}"},
            timeout=30,
        )
        assert export.status_code == 200 and len(export.text.splitlines()) == len(pool)

        metrics = requests.get(f"{base}/metrics", timeout=10).text
        # request metrics of both gunicorn processes, merged (multi-process mode)
        assert (
            'django_http_requests_total_by_view_transport_method_total{method="POST",transport="http",view="api-next"}'
            in metrics
        )
        assert f'quorum_items{{project="{project_id}"' in metrics
        # A task's outcome is counted when it returns, a moment after its job row says succeeded.
        trained_metric = 'quorum_celery_tasks_total{outcome="succeeded",task="acquisition.tasks.training_job_run"}'

        def metrics_with_training():
            text = requests.get(f"{base}/metrics", timeout=10).text
            return text if trained_metric in text else None

        metrics = wait_for(
            metrics_with_training,
            timeout=60,
            what=f"the training task's metric\n{logs()}",
        )
        assert trained_metric in metrics
        assert 'task="acquisition.tasks.items_embed"' in metrics
        embed_log = gpu_log.read_text()
        assert "acquisition.tasks.items_embed[" in embed_log  # embedding went to the gpu worker
        assert "acquisition.tasks.items_embed[" not in default_log.read_text()


def _project(project_id):
    from annotation.models import Project

    return Project.objects.get(pk=project_id)
