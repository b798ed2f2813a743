"""Run Quorum on the embedded default: migrate, load the demo, start a Celery worker process on
the configured broker (the filesystem broker unless CELERY_BROKER_URL says otherwise) and serve
the app on localhost until Ctrl-C."""

import os
import signal
import subprocess
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Migrate, load the demo project, start a Celery worker and the web server (embedded default)."

    def add_arguments(self, parser):
        parser.add_argument("--addrport", default="127.0.0.1:8000")
        parser.add_argument("--password", default="quorum-demo")
        parser.add_argument("--no-worker", action="store_true", help="do not start a Celery worker")

    def handle(self, *args, addrport, password, no_worker, **options):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("load_demo", password=password)
        worker = None
        if not no_worker:
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "quorum",
                    "worker",
                    "-Q",
                    "default,gpu",
                    "--concurrency",
                    "2",
                    "--loglevel",
                    "INFO",
                    "--hostname",
                    "demo@%h",
                ],
                env=os.environ.copy(),
                start_new_session=True,
            )
            self.stdout.write(f"Celery worker started (pid {worker.pid}) on broker {settings.CELERY_BROKER_URL}")
        self.stdout.write(
            self.style.SUCCESS(f"Quorum is at http://{addrport}/  (API docs: http://{addrport}/api/v1/docs/)")
        )
        try:
            call_command("runserver", addrport, use_reloader=False)
        finally:
            if worker is not None and worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
                try:
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)
