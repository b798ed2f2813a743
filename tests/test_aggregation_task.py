"""The debounced aggregation task: one scheduled run per window, the flag cleared when it starts,
and a real worker that runs it and writes a snapshot."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import AggregationState, AgreementSnapshot, Annotation, LabelClass, Role
from annotation.services.aggregation import STALE_REQUEST_SECONDS, aggregation_requests_overdue
from loop import tasks
from loop.services import aggregation
from tests.invariants import make_items

from .worker import celery_worker, wait_for


@pytest.fixture
def sent(monkeypatch):
    """The aggregation task's messages, ``(args, countdown)``, recorded instead of sent. The task is
    sent by its registered name (``loop.enqueue``); Celery resolves the name to this task and calls
    its ``apply_async(args, kwargs, **options)``."""
    calls = []

    def record(args=None, kwargs=None, **options):
        calls.append((tuple(args), options.get("countdown")))

    monkeypatch.setattr(tasks.project_aggregate_task, "apply_async", record)
    return calls


@pytest.mark.django_db
def test_two_requests_schedule_one_run(project, sent, django_capture_on_commit_callbacks, settings):
    settings.QUORUM_AGGREGATION_DELAY_SECONDS = 7
    with django_capture_on_commit_callbacks(execute=True):
        assert aggregation.aggregation_request(project=project) is True
        assert aggregation.aggregation_request(project=project) is False
    with django_capture_on_commit_callbacks(execute=True):
        assert aggregation.aggregation_request(project=project) is False
    assert sent == [((project.pk,), 7.0)]


@pytest.mark.django_db
def test_the_task_clears_the_flag_when_it_starts(project, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        aggregation.aggregation_request(project=project)
    result = tasks.project_aggregate_task.run(project.pk)
    assert AgreementSnapshot.objects.filter(pk=result["snapshot"]).exists()
    state = AggregationState.objects.get(project=project)
    assert state.requested_at is None and state.started_at is not None and state.finished_at is not None
    with django_capture_on_commit_callbacks(execute=True):
        assert aggregation.aggregation_request(project=project) is True
    assert len(sent) == 2


@pytest.mark.django_db
def test_a_stale_flag_does_not_block_for_ever(project, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        aggregation.aggregation_request(project=project)
    AggregationState.objects.filter(project=project).update(
        requested_at=timezone.now() - timedelta(seconds=STALE_REQUEST_SECONDS + 1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert aggregation.aggregation_request(project=project) is True
    assert len(sent) == 2


@pytest.mark.django_db
def test_a_broker_failure_leaves_the_request_overdue(project, monkeypatch, django_capture_on_commit_callbacks):
    def broken(*args, **kwargs):
        raise ConnectionError("broker down")

    with monkeypatch.context() as patch:
        patch.setattr(tasks.project_aggregate_task, "apply_async", broken)
        with django_capture_on_commit_callbacks(execute=True):
            aggregation.aggregation_request(project=project)
    # the flag stays set (the labels are not forgotten) and is overdue at once: the sweep sends it
    assert AggregationState.objects.get(project=project).requested_at is not None
    assert aggregation_requests_overdue(older_than=aggregation.aggregation_overdue()) == [project.pk]
    sent = []
    monkeypatch.setattr(tasks.project_aggregate_task, "apply_async", lambda *a, **k: sent.append(a))
    with django_capture_on_commit_callbacks(execute=True):
        assert aggregation.aggregation_request(project=project) is True  # the next label sends it again
    assert len(sent) == 1


@pytest.mark.django_db
def test_a_rolled_back_request_leaves_no_flag(project, sent, django_capture_on_commit_callbacks):
    from django.db import transaction

    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                aggregation.aggregation_request(project=project)
                raise RuntimeError("the submission failed")
        except RuntimeError:
            pass
    assert not AggregationState.objects.filter(project=project, requested_at__isnull=False).exists()
    assert sent == []


@pytest.mark.django_db
def test_submissions_and_undos_request_an_aggregation(
    project, member, sent, recording_supply, django_capture_on_commit_callbacks
):
    from acquisition.models import ScoringRun
    from annotation import services
    from tests.invariants import enqueue

    ScoringRun.objects.create(project=project, strategy="margin", status=ScoringRun.Status.SUCCEEDED)
    enqueue(project, make_items(project, 2))
    user = member("ann")
    member("other")  # a second annotator: the item stays open (undoable) after ann's label
    with django_capture_on_commit_callbacks(execute=True):
        assignment = services.assignment_next(project=project, user=user).assignment
        result = services.annotation_submit(assignment_id=assignment.pk, user=user, label="refund")
    assert len(sent) == 1
    AggregationState.objects.filter(project=project).update(requested_at=None)
    with django_capture_on_commit_callbacks(execute=True):
        services.annotation_undo(annotation_id=result.annotation.pk, user=user)
    assert len(sent) == 2


@pytest.mark.django_db
def test_the_task_for_a_vanished_project_is_harmless():
    assert tasks.project_aggregate_task.run(987654) == {"project": 987654, "status": "missing"}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_debounced_task_runs_on_a_real_worker(project, member, tmp_path, settings):
    settings.QUORUM_AGGREGATION_DELAY_SECONDS = 1
    users = [member(f"w{i}") for i in range(2)] + [member("wr", Role.REVIEWER)]
    refund = LabelClass.objects.get(project=project, name="refund")
    items = make_items(project, 5)
    Annotation.objects.bulk_create(
        [Annotation(project=project, item=item, user=user, label=refund) for item in items for user in users[:2]]
    )
    with celery_worker(tmp_path) as (process, log_path):
        assert aggregation.aggregation_request(project=project)  # autocommit: sent at once
        assert not aggregation.aggregation_request(project=project)
        snapshot = wait_for(
            lambda: AgreementSnapshot.objects.filter(project=project).first(),
            timeout=90,
            what=f"an agreement snapshot written by the worker\n{log_path.read_text()}",
        )
        assert process.poll() is None
    assert snapshot.n_annotations == 10 and len(snapshot.annotators) == 2
    assert AgreementSnapshot.objects.filter(project=project).count() == 1  # two requests, one run
    assert AggregationState.objects.get(project=project).requested_at is None
    assert "annotation.tasks.project_aggregate_task[" in log_path.read_text()
