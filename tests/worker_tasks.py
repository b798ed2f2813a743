"""Tasks that only the fault tests' workers load (``celery worker --include tests.worker_tasks``): a
task that holds its message for a while, to lose the broker under it, and one that answers at once."""

from __future__ import annotations

import time

from celery import shared_task


@shared_task(name="tests.hold", acks_late=True)
def hold(seconds: float) -> str:
    time.sleep(seconds)
    return "held"


@shared_task(name="tests.touch")
def touch(path: str, text: str) -> str:
    with open(path, "a") as out:
        out.write(text + "\n")
    return text
