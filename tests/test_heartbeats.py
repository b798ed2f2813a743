"""Heartbeats and the sweep: a dead worker or a lost message costs seconds, not the stale limit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from acquisition.models import ScoringRun, TrainingJob
from acquisition.services.jobs import job_heartbeat
from annotation.models import AggregationState
from loop import tasks
from loop.services import aggregation, scoring, sweep
from loop.supply import ScoringSupply

pytestmark = pytest.mark.django_db


@pytest.fixture
def fast(settings):
    settings.QUORUM_JOB_HEARTBEAT_TIMEOUT = 5
    settings.QUORUM_JOB_PENDING_TIMEOUT = 5
    settings.QUORUM_AGGREGATION_DELAY_SECONDS = 1


@pytest.fixture
def sent(monkeypatch, django_capture_on_commit_callbacks):
    """Task messages the code under test sends (name, args), instead of a broker; messages sent on
    commit are sent at once (the test's transaction never commits)."""
    monkeypatch.setattr("django.db.transaction.on_commit", lambda callback, *a, **k: callback())
    out = []
    for task in (tasks.scoring_run_execute, tasks.training_job_run, tasks.project_aggregate_task):
        monkeypatch.setattr(
            task, "apply_async", lambda args=None, kwargs=None, _n=task.name, **o: out.append((_n, args))
        )
    return out


def silent_for(job, seconds: float) -> None:
    ago = timezone.now() - timedelta(seconds=seconds)
    type(job).objects.filter(pk=job.pk).update(heartbeat_at=ago, started_at=ago, created_at=ago)


def test_a_silent_running_run_is_superseded_by_the_next_request(project, fast, sent):
    lost = ScoringRun.objects.create(project=project, strategy="margin", status=ScoringRun.Status.RUNNING)
    silent_for(lost, 6)
    assert not ScoringSupply().running(project)  # `next` does not wait for it
    new = scoring.scoring_request(project=project, trigger="low_queue")
    lost.refresh_from_db()
    assert new is not None and lost.status == ScoringRun.Status.FAILED and "no heartbeat" in lost.error
    assert sent == [("acquisition.tasks.scoring_run_execute", (new.pk,))]


def test_a_beating_run_is_not_superseded_and_a_duplicate_message_leaves_it_alone(project, fast, sent):
    live = ScoringRun.objects.create(project=project, strategy="margin", status=ScoringRun.Status.RUNNING)
    silent_for(live, 6)
    assert job_heartbeat(ScoringRun, job_id=live.pk)
    assert ScoringSupply().running(project)
    assert scoring.scoring_request(project=project, trigger="low_queue") is None
    assert scoring.scoring_run_execute(live.pk) == {"run": live.pk, "status": "skipped"}
    live.refresh_from_db()
    assert live.status == ScoringRun.Status.RUNNING


def test_the_redelivered_message_of_a_superseded_run_does_nothing(project, fast, sent):
    lost = ScoringRun.objects.create(project=project, strategy="margin", status=ScoringRun.Status.RUNNING)
    silent_for(lost, 6)
    new = scoring.scoring_request(project=project, trigger="low_queue")
    assert scoring.scoring_run_execute(lost.pk) == {"run": lost.pk, "status": "skipped"}
    assert ScoringRun.objects.get(pk=new.pk).status == ScoringRun.Status.PENDING


def test_the_sweep_supersedes_a_silent_run_and_asks_for_a_new_one(project, fast, sent):
    lost = ScoringRun.objects.create(project=project, strategy="margin", status=ScoringRun.Status.RUNNING)
    silent_for(lost, 6)
    done = sweep.sweep()
    assert done["scoring_superseded"] == [project.pk]
    new = ScoringRun.objects.get(project=project, status=ScoringRun.Status.PENDING)
    assert new.trigger == "sweep" and sent == [("acquisition.tasks.scoring_run_execute", (new.pk,))]


def test_the_sweep_sends_a_pending_job_again_once_its_message_is_overdue(project, fast, sent):
    run = ScoringRun.objects.create(project=project, strategy="margin", heartbeat_at=timezone.now())
    job = TrainingJob.objects.create(project=project, trigger="labels", heartbeat_at=timezone.now())
    assert sweep.sweep()["resent"] == [] and sent == []  # just sent: waits for a worker
    silent_for(run, 6)
    silent_for(job, 6)
    assert sweep.sweep()["resent"] == [("scoring", run.pk), ("training", job.pk)]
    assert [name for name, _ in sent] == ["acquisition.tasks.scoring_run_execute", "acquisition.tasks.training_job_run"]
    assert sweep.sweep()["resent"] == []  # sent again: its pending time started over
    run.refresh_from_db()
    assert run.status == ScoringRun.Status.PENDING


def test_the_sweep_sends_an_aggregation_whose_message_never_left(project, fast, monkeypatch):
    monkeypatch.setattr("django.db.transaction.on_commit", lambda callback, *a, **k: callback())

    def broken(*args, **kwargs):
        raise ConnectionError("broker down")

    with monkeypatch.context() as patch:
        patch.setattr(tasks.project_aggregate_task, "apply_async", broken)
        assert aggregation.aggregation_request(project=project)  # autocommit: sent (and failed) at once
    assert AggregationState.objects.get(project=project).requested_at is not None
    sent = []
    monkeypatch.setattr(
        tasks.project_aggregate_task, "apply_async", lambda args=None, kwargs=None, **o: sent.append(args)
    )
    assert sweep.sweep()["aggregations"] == [project.pk]
    assert sent == [(project.pk,)]
    assert sweep.sweep()["aggregations"] == []  # re-armed: not sent twice
