"""gunicorn settings for production: ``gunicorn quorum.wsgi -c python:quorum.gunicorn_conf``.

Everything can still be overridden on the command line or with ``GUNICORN_CMD_ARGS``. With
``PROMETHEUS_MULTIPROC_DIR`` set (an empty folder, cleared before start), each worker process writes
its request metrics there and ``/metrics`` adds them up; a worker that exits is marked dead so its
gauges disappear.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "300"))  # long exports stream for a while
accesslog = "-"


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
