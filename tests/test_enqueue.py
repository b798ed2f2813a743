"""``loop.enqueue``: the one way a task is started (by name, on commit, surviving a broker outage),
and the ports the loop plugs into the people side at start-up."""

import pytest
from celery import current_app
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from acquisition.services.embedding import ItemVectorStore
from annotation import ports
from loop import enqueue, tasks
from loop.supply import ScoringSupply

pytestmark = pytest.mark.django_db(transaction=True)


def test_every_task_name_is_registered_with_its_historical_name():
    names = {getattr(enqueue, constant) for constant in dir(enqueue) if constant.isupper()}
    registered = {task.name for task in vars(tasks).values() if hasattr(task, "apply_async")}
    assert names == registered
    assert all(name.startswith(("annotation.tasks.", "acquisition.tasks.")) for name in names)
    assert names <= set(current_app.tasks)


def test_sent_when_the_transaction_commits_with_its_options(monkeypatch):
    sent = []
    monkeypatch.setattr(
        tasks.retrain_if_due, "apply_async", lambda args=None, kwargs=None, **options: sent.append((args, options))
    )
    with transaction.atomic():
        enqueue.enqueue_on_commit(enqueue.RETRAIN_IF_DUE, 7, countdown=3, queue="gpu")
        assert sent == []  # not before the commit
    # no result subscription: nothing waits for these results, and it would block on a frozen broker
    assert sent == [((7,), {"ignore_result": True, "countdown": 3, "queue": "gpu"})]


def test_not_sent_when_the_transaction_rolls_back(monkeypatch):
    sent = []
    monkeypatch.setattr(tasks.retrain_if_due, "apply_async", lambda *a, **k: sent.append(a))
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue.enqueue_on_commit(enqueue.RETRAIN_IF_DUE, 7)
        raise RuntimeError("the write failed")
    assert sent == []


def test_a_broker_outage_is_logged_and_handed_to_on_error(monkeypatch, caplog):
    def down(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(tasks.retrain_if_due, "apply_async", down)
    errors = []
    with transaction.atomic():
        enqueue.enqueue_on_commit(enqueue.RETRAIN_IF_DUE, 7, on_error=lambda: errors.append(7))
    assert errors == [7]  # the committed write stands; the caller's fallback ran
    assert "could not enqueue acquisition.tasks.retrain_if_due" in caplog.text


def test_the_loop_installs_its_ports():
    assert isinstance(ports.vector_store(), ItemVectorStore)
    assert isinstance(ports.queue_supply(), ScoringSupply)


def test_without_a_vector_store_pushed_vectors_are_refused_loudly(monkeypatch):
    monkeypatch.setattr(ports, "_installed", {"supply": ports.ItemOrderSupply()})
    with pytest.raises(ImproperlyConfigured, match="no vector store"):
        ports.vector_store()
    assert ports.queue_supply().started(None) is False
