"""Faults with real processes: a worker killed in the middle of a scoring run, a broker that goes
away and comes back under a worker, a broker frozen while annotators submit. Each prints what it
measured; none asserts a timing beyond generous upper bounds.

The broker tests start their own ``redis-server`` on a spare port (never the shared one) and skip
where it is not installed; the frozen-broker test runs the production profile (gunicorn on
PostgreSQL), like ``test_production``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import requests
from celery import Celery
from django.db import connection

from acquisition.models import ScoringRun
from annotation.models import AgreementSnapshot, Annotation, Role

from .test_acquisition_worker import records, succeeded_run, train_on_gold
from .test_production import free_port, gunicorn, production_env
from .worker import celery_worker, database_url_for_current_connection, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

FAST = {
    "QUORUM_JOB_HEARTBEAT_SECONDS": "1",
    "QUORUM_JOB_HEARTBEAT_TIMEOUT": "5",
    "QUORUM_JOB_PENDING_TIMEOUT": "5",
    "QUORUM_SWEEP_SECONDS": "1",
    "QUORUM_AGGREGATION_DELAY_SECONDS": "1",
}


class RedisServer:
    """A throw-away ``redis-server`` on a spare port: killed, restarted, frozen and thawed at will."""

    def __init__(self, binary: str, directory: Path):
        self.binary, self.directory, self.port = binary, directory, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self) -> None:
        log = open(self.directory / f"redis-{self.port}.log", "ab")  # noqa: SIM115  (kept open by the server)
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.directory,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._answers, timeout=20, what="redis-server")

    def _answers(self) -> bool:
        import redis

        try:
            return redis.Redis(port=self.port, socket_timeout=1).ping()
        except redis.ConnectionError:
            return False

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def freeze(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


@contextmanager
def redis_server(directory: Path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed: the broker fault tests need one to kill and freeze")
    server = RedisServer(binary, directory)
    server.start()
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.thaw()
            server.kill()


# Celery reads these variables before its own configuration (``celery.app.utils.Settings``): an
# outer ``CELERY_BROKER_URL`` (CI's shared Redis) would win over the test's own broker everywhere.
_CELERY_URL_VARIABLES = (
    "CELERY_BROKER_URL",
    "CELERY_BROKER_READ_URL",
    "CELERY_BROKER_WRITE_URL",
    "CELERY_RESULT_BACKEND",
)


def on_broker(env: dict, broker_url: str) -> dict:
    """``env`` with ``broker_url`` as the only broker (and result backend) the process can see."""
    env = {name: value for name, value in env.items() if name not in _CELERY_URL_VARIABLES}
    return {**env, "CELERY_BROKER_URL": broker_url}


def send_task(broker_url: str, name: str, *args) -> None:
    """Send task ``name`` to ``broker_url`` itself (on the workers' queue ``default``), whatever
    broker this test process is configured with."""
    sender = Celery("sender", set_as_current=False)
    with sender.connection_for_write(broker_url) as connection:
        sender.send_task(name, args=args, queue="default", connection=connection)


def worker_env(broker_url: str, **extra) -> dict:
    return {
        **on_broker(os.environ, broker_url),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url_for_current_connection(),
        "PYTHONUNBUFFERED": "1",
        **FAST,
        **extra,
    }


def test_a_worker_survives_a_broker_restart_and_takes_tasks_sent_after_it(tmp_path):
    with ExitStack() as stack:
        redis = stack.enter_context(redis_server(tmp_path))
        env = worker_env(redis.url)
        process, log_path = stack.enter_context(
            celery_worker(tmp_path, queues="default", env=env, extra_args=("--include", "tests.worker_tasks"))
        )
        send_task(redis.url, "tests.hold", 8)  # holds its message across the outage
        wait_for(lambda: "tests.hold[" in log_path.read_text(), timeout=30, what="the held task")
        redis.kill()
        time.sleep(3)
        redis.start()
        wait_for(
            lambda: log_path.read_text().count("Connected to redis") >= 2 or process.poll() is not None,
            timeout=90,
            what=f"the worker's reconnection\n{log_path.read_text()}",
        )
        assert process.poll() is None, log_path.read_text()
        marker = tmp_path / "after-restart.txt"
        send_task(redis.url, "tests.touch", str(marker), "after")
        wait_for(marker.exists, timeout=60, what=f"the task sent after the restart\n{log_path.read_text()}")
        assert process.poll() is None
        assert "Unrecoverable error" not in log_path.read_text()


def test_a_killed_worker_costs_seconds_not_the_stale_limit(admin_api, project, tmp_path, monkeypatch):
    for name, value in {**FAST, "QUORUM_SCORING_CHUNK": "4"}.items():
        monkeypatch.setenv(name, value)  # read by the worker processes at start-up
    project.encoder = "hashing:4"
    project.batch_size = 8
    project.acquisition_strategy = "margin"
    project.save(update_fields=["encoder", "batch_size", "acquisition_strategy"])

    with celery_worker(tmp_path) as (process, log_path):
        admin_api.post(f"/api/v1/projects/{project.pk}/items", records(160), format="json")
        first = succeeded_run(project, log_path)  # cold start
        train_on_gold(project)
        response = admin_api.post(f"/api/v1/projects/{project.pk}/scoring-runs", {}, format="json")
        assert response.status_code == 202, response.content
        doomed = response.json()["id"]
        wait_for(
            lambda: ScoringRun.objects.filter(pk=doomed, status="running", chunks_done__gte=1).exists(),
            timeout=120,
            what=f"the run under way\n{log_path.read_text()}",
        )
        os.killpg(process.pid, signal.SIGKILL)  # the worker and its pool, mid-run
        killed_at = time.monotonic()
        process.wait()
        run = ScoringRun.objects.get(pk=doomed)
        assert run.status == ScoringRun.Status.RUNNING and run.chunks_done < run.n_chunks, "the run finished first"

    with celery_worker(tmp_path) as (process, log_path):
        replacement = succeeded_run(project, log_path, after=doomed)
        seconds = time.monotonic() - killed_at
        assert process.poll() is None
    print(f"\nworker killed mid-run: a new run filled the queue {seconds:.1f} s later")
    doomed_run = ScoringRun.objects.get(pk=doomed)
    assert doomed_run.status == ScoringRun.Status.FAILED and "no heartbeat" in doomed_run.error
    assert replacement.pk > first.pk and replacement.selected == 8
    assert seconds < 1800  # the old stale limit: far below it (printed above)


def test_annotations_sent_to_a_frozen_broker_are_aggregated_after_it_thaws(make_user, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the frozen-broker test runs the production profile on PostgreSQL (set DATABASE_URL)")
    from rest_framework.authtoken.models import Token

    from annotation import services
    from annotation.services.projects import LabelSpec

    admin = make_user("fz-admin", staff=True)
    annotators = [make_user(f"fz-ann{i}") for i in range(2)]
    project = services.project_create(
        user=admin, name="Frozen broker", labels=[LabelSpec("a"), LabelSpec("b")], embedding_dim=4
    )
    for user in annotators:
        services.membership_set(project=project, username=user.username, role=Role.ANNOTATOR)
    tokens = {user.username: Token.objects.create(user=user).key for user in [admin, *annotators]}

    with ExitStack() as stack:
        redis = stack.enter_context(redis_server(tmp_path))
        env = {**on_broker(production_env(tmp_path / "data"), redis.url), **FAST}
        base, web_log = stack.enter_context(gunicorn(env, tmp_path))
        _, worker_log = stack.enter_context(celery_worker(tmp_path, queues="default,gpu", env=env))

        def api(user, method, path, **kwargs):
            headers = {"Authorization": f"Token {tokens[user.username]}"}
            return requests.request(method, f"{base}/api/v1{path}", headers=headers, timeout=60, **kwargs)

        pool = [{"external_id": f"x-{i}", "text": f"text number {i}"} for i in range(12)]
        assert api(admin, "POST", f"/projects/{project.pk}/items", json=pool).status_code == 201

        redis.freeze()
        slowest, submitted = 0.0, 0
        try:
            for _ in range(3):
                for user in annotators:
                    started = time.monotonic()
                    answer = api(user, "POST", f"/projects/{project.pk}/next", json={})
                    assert answer.status_code == 200, answer.text
                    assignment = answer.json()["assignment"]
                    if assignment is None:
                        continue
                    done = api(user, "POST", f"/assignments/{assignment['id']}/annotation", json={"label": "a"})
                    assert done.status_code == 201, done.text
                    slowest = max(slowest, time.monotonic() - started)
                    submitted += 1
            assert requests.get(f"{base}/healthz", timeout=10).status_code == 200
            started = time.monotonic()
            ready = requests.get(f"{base}/readyz", timeout=30)
            ready_seconds = time.monotonic() - started
            assert ready.status_code == 503, ready.text
        finally:
            redis.thaw()
        print(
            f"\nfrozen broker: slowest next+submit {slowest:.1f} s, /readyz answered 503 in {ready_seconds:.1f} s;"
            f" {submitted} annotations"
        )
        assert submitted > 0

        def aggregated():
            snapshot = AgreementSnapshot.objects.filter(project=project).order_by("-pk").first()
            return snapshot is not None and snapshot.n_annotations == Annotation.objects.filter(project=project).count()

        thawed = time.monotonic()
        wait_for(aggregated, timeout=120, what=f"every annotation aggregated\n{worker_log.read_text()[-4000:]}")
        print(f"every annotation aggregated {time.monotonic() - thawed:.1f} s after the thaw, without traffic")
        assert slowest < 30 and ready_seconds < 30  # never the gunicorn timeout (printed above)
