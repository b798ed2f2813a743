"""A real Celery worker process for tests, on the configured broker and the test database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from quorum.celery import app

ROOT = Path(__file__).resolve().parent.parent
_workers_running = 0


def database_url_for_current_connection() -> str:
    """DATABASE_URL of the database the tests use right now (the test database, not the real one)."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgres://{auth}{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db['NAME']}"


@contextmanager
def celery_worker(
    log_dir: Path,
    *,
    queues: str = "default,gpu",
    ready_timeout: float = 90.0,
    env: dict | None = None,
    extra_args: tuple[str, ...] = (),
):
    """Start ``celery -A quorum worker`` as a separate process and stop it afterwards.

    Messages left on the broker by earlier runs are purged first so the worker only sees this
    test's tasks (a second worker started inside the first one's block does not purge again).
    ``env`` replaces the default environment (the test settings on the test database); ``extra_args``
    go to ``celery worker`` as they are (``--include tests.worker_tasks``)."""
    global _workers_running
    if not _workers_running:
        app.control.purge()
    log_path = log_dir / f"celery-worker-{uuid.uuid4().hex[:8]}.log"
    env = env or {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url_for_current_connection(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "QUORUM_BROKER_DIR": str(settings.BROKER_DIR),
        "PYTHONUNBUFFERED": "1",
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "quorum",
                "worker",
                "-Q",
                queues,
                "--concurrency",
                "1",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--hostname",
                f"test-{uuid.uuid4().hex[:8]}@%h",
                *extra_args,
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _workers_running += 1
    try:
        deadline = time.monotonic() + ready_timeout
        while b" ready." not in log_path.read_bytes():
            if process.poll() is not None:
                raise RuntimeError(f"Celery worker exited with {process.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"Celery worker not ready after {ready_timeout}s:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield process, log_path
    finally:
        _workers_running -= 1
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(predicate, *, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
