"""The demo loader: the shipped BANKING77 slice goes through the real ingest path."""

import csv
import json
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from acquisition.models import ModelVersion, TrainingJob
from annotation.models import Annotation, IngestBatch, Item, LabelClass, Membership, Project
from loop.services import push, training
from loop.services.aggregation import project_aggregate_run

DEMO = Path(__file__).resolve().parent.parent / "annotation" / "demo"


def test_demo_data_ships_with_its_licence():
    assert "Attribution 4.0 International" in (DEMO / "LICENSE-banking77").read_text()
    assert "CC BY 4.0" in (DEMO / "README.md").read_text()
    with open(DEMO / "banking77_sample.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert 1900 <= len(rows) <= 2100
    assert len({row["category"] for row in rows}) == 77


@pytest.mark.django_db
def test_load_demo_creates_project_users_and_items_and_is_idempotent():
    out = StringIO()
    call_command("load_demo", stdout=out)
    project = Project.objects.get(name__contains="demo")
    categories = json.loads((DEMO / "banking77_categories.json").read_text())
    assert list(LabelClass.objects.filter(project=project).values_list("name", flat=True)) == categories
    assert Item.objects.filter(project=project).count() == 2002
    assert Membership.objects.filter(project=project).count() == 5
    assert authenticate(username="annotator1", password="quorum-demo") is not None
    assert "annotator1" in out.getvalue() and "quorum-demo" in out.getvalue()
    # No gold label leaks to annotators through the item metadata.
    assert not Item.objects.filter(project=project, metadata__has_key="category").exists()

    again = StringIO()
    call_command("load_demo", stdout=again)
    assert "0 items created, 0 updated, 2002 unchanged" in again.getvalue()
    assert Project.objects.filter(name__contains="demo").count() == 1


@pytest.mark.django_db
def test_demo_history_labels_items_through_the_queue_once():
    call_command("load_demo", stdout=StringIO(), history=30)
    project = Project.objects.get(name__contains="demo")
    from django.db.models import Count

    counts = list(
        Annotation.objects.filter(project=project).values("item_id").annotate(n=Count("id")).values_list("n", flat=True)
    )
    # two demo annotators per item, a third where they disagreed; nothing beyond the history
    assert len(counts) == 30 and set(counts) <= {2, 3}
    assert set(Annotation.objects.filter(project=project).values_list("user__username", flat=True)) <= {
        "annotator1",
        "annotator2",
        "annotator3",
    }
    assert (
        Item.objects.filter(project=project, status="finalized").count()
        + Item.objects.filter(project=project, status="in_review").count()
        == 30
    )
    before = Annotation.objects.filter(project=project).count()
    call_command("load_demo", stdout=StringIO(), history=30)
    assert Annotation.objects.filter(project=project).count() == before


@pytest.mark.django_db
def test_the_seeded_demo_starts_without_a_failed_training_job(settings, tmp_path):
    """The demo's history finalises labels while its 2,002 items still wait for their vectors; a
    worker runs the aggregation (and so the retrain trigger) before the embedding pass ends. The
    trigger used to request a job then, which failed at once (no final label with an embedding) and
    greeted every demo with a red job. Here the loop's steps run in that order."""
    settings.QUORUM_CACHE_DIR = tmp_path / "cache"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.QUORUM_ENCODER = "hashing:384"  # the demo's flow with a fast encoder (the race is the same)

    def run_requested_jobs():
        for job in TrainingJob.objects.filter(status__in=TrainingJob.ACTIVE):
            training.training_job_execute(job.pk)

    call_command("load_demo", stdout=StringIO())
    project = Project.objects.get(name__contains="demo")
    push.ingest_batch_process(IngestBatch.objects.get(project=project).pk)
    project_aggregate_run(project.pk)  # the aggregation's task, while the embedding task still runs
    run_requested_jobs()
    assert push.items_embed(project.pk)["embedded"] == 2002
    run_requested_jobs()

    jobs = TrainingJob.objects.filter(project=project)
    assert not jobs.filter(status=TrainingJob.Status.FAILED).exists(), list(jobs.values_list("error", flat=True))
    assert jobs.filter(status=TrainingJob.Status.SUCCEEDED).count() == 1
    assert ModelVersion.objects.get(project=project).status == ModelVersion.Status.CURRENT
