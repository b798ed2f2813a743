"""The model side of multi-label projects in-process: a training job fits the one-vs-rest head on the
final tag sets, evaluates it with multi-label figures, gates the next version on whole sets, scores
the pool with the project's multi-label strategy and fills the queue with tag-set suggestions."""

import numpy as np
import pytest
from django.utils import timezone

from acquisition.models import ModelVersion, TrainingJob
from acquisition.services import registry
from acquisition.services.snapshot import evaluation_mask, label_snapshot
from annotation.models import Item, ItemStatus, LabelSource, QueueEntry
from loop.services import training

from .pools import cluster_pool

pytestmark = pytest.mark.django_db

DIM = 8
PER_CLUSTER = 80
TAGS = ("a", "b", "c")


@pytest.fixture(autouse=True)
def small(settings, tmp_path):
    settings.QUORUM_CACHE_DIR = tmp_path / "cache"
    settings.MEDIA_ROOT = tmp_path / "media"


def tag_sets_of(cluster: int) -> list[int]:
    """Cluster c carries tag c, and cluster 2 also tag a (a two-tag set)."""
    return [0, 2] if cluster == 2 else [cluster]


@pytest.fixture
def pool(make_project):
    project = make_project(
        "Tags",
        labels=TAGS,
        embedding_dim=DIM,
        batch_size=12,
        retrain_after=30,
        exploration_fraction=0.25,
        task_type="multi_label",
        acquisition_strategy="margin",
    )
    cluster_pool(project, per_cluster=PER_CLUSTER, dim=DIM, scale=0.5)
    return project


def finalise(project, per_cluster: int, start: int = 0, *, source=LabelSource.CONSENSUS):
    label_ids = list(project.labels.order_by("order", "pk").values_list("pk", flat=True))
    for c in range(3):
        for pk in project.by_cluster[c][start : start + per_cluster]:
            Item.objects.filter(pk=pk).update(
                final_tags=sorted(label_ids[t] for t in tag_sets_of(c)),
                final_confidence=1.0,
                final_source=source,
                status=ItemStatus.FINALIZED,
                finalized_at=timezone.now(),
            )


def run_job(project):
    job = training.training_job_request(project=project, trigger="manual")
    assert job is not None
    training.training_job_execute(job.pk)
    job.refresh_from_db()
    return job


def test_snapshot_holds_tag_sets_and_stratifies_the_split_by_the_rarest_tag(pool):
    finalise(pool, 40)
    snap = label_snapshot(pool)
    assert snap.multi_label and snap.y.shape == (120, 3) and len(snap) == 120
    assert sorted(map(tuple, np.unique(snap.y, axis=0).tolist())) == [(0, 1, 0), (1, 0, 0), (1, 0, 1)]
    # tag a is the commonest (clusters 0 and 2): cluster 2's sets are stratified by tag c
    assert set(snap.strata.tolist()) == {0, 1, 2}
    held_out = evaluation_mask(pool, snap)
    assert 0 < held_out.sum() <= 0.2 * len(snap) + 1
    assert set(snap.strata[held_out].tolist()) == {0, 1, 2}  # every stratum is held out


def test_a_job_trains_the_one_vs_rest_head_and_fills_the_queue_with_tag_suggestions(pool, recording_supply):
    finalise(pool, 35)
    job = run_job(pool)
    assert job.status == TrainingJob.Status.SUCCEEDED and job.outcome == "promoted", job.error
    version = job.model_version
    assert version.n_labels == 105 and version.n_train + version.n_eval == 105  # items, not item x tag cells
    head = version.hyperparameters["head"]
    assert head["kind"] == "one_vs_rest"
    # the thresholds were read off the unlabelled pool (the items without a final label)
    assert head["threshold_source"] == "pool" and head["n_unlabelled"] == 3 * PER_CLUSTER - 105
    figures = version.metrics["eval"]
    for key in ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss", "per_label", "ece_per_tag"):
        assert key in figures
    assert figures["accuracy"] == figures["subset_accuracy"]
    assert figures["macro_f1"] > 0.9  # separable clusters
    assert job.timings["label_error_review"]["status"] == "off"
    model = registry.model_load(version)
    assert model.n_labels_ == 3
    # The promoted model re-scored the pool: queue entries carry the model's tag set and probabilities.
    entries = list(QueueEntry.objects.filter(project=pool).exclude(suggested_tags=None))
    assert entries, "no suggestions written"
    label_ids = list(pool.labels.order_by("order", "pk").values_list("pk", flat=True))
    cluster_tags = {c: sorted(label_ids[t] for t in tag_sets_of(c)) for c in range(3)}
    right = sum(entry.suggested_tags["tags"] == cluster_tags[pool.cluster_of[entry.item_id]] for entry in entries)
    assert right >= 0.9 * len(entries)
    assert all(0.5 <= entry.suggested_confidence <= 1.0 for entry in entries)


def test_the_next_version_is_gated_on_whole_tag_sets(pool, recording_supply):
    finalise(pool, 35)
    first = run_job(pool).model_version
    finalise(pool, 15, start=35)
    second = run_job(pool).model_version
    gate = second.metrics["gate"]
    assert gate["current_version"] == first.version
    assert gate["n"] > 0 and "subset_accuracy" in gate["candidate"]
    assert second.status in (ModelVersion.Status.CURRENT, ModelVersion.Status.REJECTED)


def test_dashboard_and_models_page_speak_of_tags(pool, recording_supply, client_for, admin_user, make_user):
    from annotation.models import Annotation
    from annotation.services.aggregation import project_aggregate

    finalise(pool, 35)
    run_job(pool)
    label_ids = list(pool.labels.order_by("order", "pk").values_list("pk", flat=True))
    people = [make_user(name) for name in ("p1", "p2")]
    for pk in pool.by_cluster[1][40:60]:
        for user in people:
            Annotation.objects.create(project=pool, item_id=pk, user=user, tags=[label_ids[1]])
    project_aggregate(project=pool)
    client = client_for(admin_user)
    page = client.get(f"/projects/{pool.pk}/dashboard")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Decided items carrying each tag" in html and "micro-F1" in html
    assert 'data-testid="per-tag-kappa"' in html and "MASI" in html
    models = client.get(f"/projects/{pool.pk}/models")
    assert models.status_code == 200
    assert "Subset accuracy" in models.content.decode() and "Hamming loss" in models.content.decode()
