"""The training job with the semi-supervised head: what a version is fitted on and records, the metrics
and the gate on held-out labels only, and QBC / BALD served by one head while their committee ranks."""

import numpy as np
import pytest
from django.utils import timezone

from acquisition import embeddings
from acquisition import strategies as S
from acquisition.committee import HeadCommittee
from acquisition.heads import HeadWithCommittee
from acquisition.models import ModelVersion, ScoringRun, TrainingJob
from acquisition.semisupervised import LabelSpreadingHead
from acquisition.services import fitting, registry
from annotation.models import Item, ItemStatus, LabelSource, QueueEntry, QueueReason
from loop import tasks
from loop.services import training

from .pools import cluster_pool

pytestmark = pytest.mark.django_db

DIM = 8
PER_CLUSTER = 100


@pytest.fixture(autouse=True)
def storage(settings, tmp_path):
    settings.QUORUM_CACHE_DIR = tmp_path / "cache"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.QUORUM_COMMITTEE_MEMBERS = 3


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    """Follow-up tasks are not sent (the job runs in this process)."""
    for task in (tasks.training_job_run, tasks.scoring_run_execute):
        monkeypatch.setattr(task, "apply_async", lambda *args, **kwargs: None)


@pytest.fixture
def pool(make_project):
    """Three overlapping clusters of 100 items in 8-d, one per label."""
    project = make_project(
        "Semi", labels=("a", "b", "c"), embedding_dim=DIM, batch_size=10, retrain_after=30, exploration_fraction=0.0
    )
    cluster_pool(project, per_cluster=PER_CLUSTER, dim=DIM, scale=0.7, spread=1.5)
    return project


def finalise(project, item_ids, *, shift=0, selected_as=""):
    labels = list(project.labels.order_by("order", "pk"))
    for pk in item_ids:
        Item.objects.filter(pk=pk).update(
            final_label=labels[(project.cluster_of[pk] + shift) % 3],
            final_confidence=1.0,
            final_source=LabelSource.CONSENSUS,
            status=ItemStatus.FINALIZED,
            finalized_at=timezone.now(),
            selected_as=selected_as,
        )


def take(project, per_cluster, start=0):
    return [pk for c in range(3) for pk in project.by_cluster[c][start : start + per_cluster]]


def label_pool(project):
    """120 labels: a uniform exploration sample of 10 per cluster (24 of them held out, 20%) and 30
    more each."""
    finalise(project, take(project, 10), selected_as=QueueReason.EXPLORATION)
    finalise(project, take(project, 30, start=10))


def run_job(project):
    job = training.training_job_request(project=project, trigger="manual")
    training.training_job_execute(job.pk)
    job.refresh_from_db()
    return job


def vectors_of(project, ids):
    matrix = embeddings.embeddings_load(project)
    return np.asarray(matrix.vectors[matrix.positions(np.asarray(ids, dtype=np.int64))])


# ------------------------------------------------------------------------------------------------
def test_a_version_serves_the_semi_supervised_head_and_is_judged_on_held_out_labels(pool):
    label_pool(pool)
    job = run_job(pool)
    version = job.model_version
    assert job.status == TrainingJob.Status.SUCCEEDED and version.status == ModelVersion.Status.CURRENT
    head = version.hyperparameters["head"]
    assert head["kind"] == "label_spreading" and head["n_unlabelled"] == 3 * PER_CLUSTER - 120
    assert set(head["chosen"]) >= {"n_neighbors", "alpha", "mixing"}

    registry._MODELS.clear()  # read both back from storage
    serving, evaluated = registry.model_load(version), registry.model_load(version, role="evaluation")
    assert isinstance(serving, LabelSpreadingHead) and isinstance(evaluated, LabelSpreadingHead)
    assert serving.n_unlabelled_ == evaluated.n_unlabelled_ == 3 * PER_CLUSTER - 120
    # the serving head is refitted on every label with the choices made without the held-out ones
    chosen = (evaluated.n_neighbors_, evaluated.alpha_, evaluated.mixing_)
    assert (serving.n_neighbors_, serving.alpha_, serving.mixing_) == chosen
    assert serving.cv_results_ == {} and evaluated.cv_results_
    assert head["chosen"]["mixing"] == evaluated.mixing_

    # held out: the exploration sample, never among the unlabelled items either
    held_out = np.frombuffer(bytes(version.eval_items), dtype="<i8")
    assert version.n_eval == len(held_out) == 24 and set(held_out) <= set(take(pool, 10))
    snap = fitting.label_snapshot(pool)
    sample_ids, sample = fitting.unlabelled_sample(pool, snap, 10_000)
    assert not set(sample_ids) & set(snap.item_ids.tolist()) and len(sample_ids) == head["n_unlabelled"]
    np.testing.assert_array_equal(sample, vectors_of(pool, sample_ids))
    # the metrics are the evaluation head's on the held-out labels
    truth = np.array([pool.cluster_of[int(pk)] for pk in held_out])
    accuracy = (evaluated.predict(vectors_of(pool, held_out)) == truth).mean()
    assert version.metrics["eval"]["accuracy"] == pytest.approx(accuracy)
    # the promoted head scored the pool and suggested labels
    entries = QueueEntry.objects.filter(project=pool, run=job.scoring_run)
    assert entries.count() == pool.batch_size
    probs = serving.predict_proba(vectors_of(pool, [e.item_id for e in entries]))
    assert [e.suggested_confidence for e in entries] == pytest.approx(probs.max(1).tolist(), abs=1e-6)


def test_the_gate_compares_semi_supervised_heads_on_labels_neither_saw_and_rejects_a_worse_one(pool):
    label_pool(pool)
    first = run_job(pool).model_version
    seen_by_first = set(take(pool, 40)) - set(np.frombuffer(bytes(first.eval_items), dtype="<i8").tolist())
    # many wrong labels from the strategy's picks, a correct exploration sample to judge by
    finalise(pool, take(pool, 10, start=40), selected_as=QueueReason.EXPLORATION)
    finalise(pool, take(pool, 40, start=50), shift=1)
    job = run_job(pool)
    second = job.model_version
    assert second.hyperparameters["head"]["kind"] == "label_spreading"
    assert job.outcome == "rejected" and second.status == ModelVersion.Status.REJECTED
    gate = second.metrics["gate"]
    # only labels unseen by both: the candidate's held-out labels the current model did not train on
    held_out = set(np.frombuffer(bytes(second.eval_items), dtype="<i8").tolist())
    assert gate["n"] == len(held_out - seen_by_first) >= 20
    assert gate["current"]["accuracy"] > gate["candidate"]["accuracy"]
    first.refresh_from_db()
    assert first.status == ModelVersion.Status.CURRENT


def test_the_plain_head_when_semi_supervision_is_off(pool, settings):
    settings.QUORUM_SEMI_SUPERVISED = False
    label_pool(pool)
    version = run_job(pool).model_version
    assert version.hyperparameters["head"] == {"weight_decay": 0.1, "kind": "logistic"}
    registry._MODELS.clear()
    model = registry.model_load(version)
    assert isinstance(model, HeadCommittee) and model.n_outputs_ == 1


def test_the_unlabelled_items_are_capped_and_more_labels_than_the_cap_train_the_plain_head(pool, settings):
    label_pool(pool)  # 120 labels, 180 unlabelled items
    settings.QUORUM_SEMI_SUPERVISED_MAX_UNLABELLED = 150
    version = fitting.model_fit(project=pool)
    assert version.hyperparameters["head"]["n_unlabelled"] == 150
    settings.QUORUM_SEMI_SUPERVISED_MAX_UNLABELLED = 100
    version = fitting.model_fit(project=pool)
    assert (
        version.hyperparameters["head"]["kind"] == "logistic"
        and "plain head" in version.hyperparameters["head"]["note"]
    )
    assert isinstance(registry.model_load(version), HeadCommittee)


@pytest.mark.parametrize("strategy", ["qbc", "bald"])
def test_a_committee_strategy_is_served_by_one_head_and_ranked_by_its_committee(pool, strategy):
    pool.acquisition_strategy = strategy
    pool.save(update_fields=["acquisition_strategy"])
    label_pool(pool)
    job = run_job(pool)
    version = job.model_version
    registry._MODELS.clear()
    served = registry.model_load(version)
    evaluated = registry.model_load(version, role="evaluation")
    assert isinstance(served, HeadWithCommittee) and isinstance(served.head, LabelSpreadingHead)
    assert served.head.n_outputs_ == 1 and served.n_outputs_ == (3 if strategy == "qbc" else 20)
    assert isinstance(evaluated, LabelSpreadingHead) and evaluated.n_outputs_ == 1  # metrics: one head
    assert version.hyperparameters["n_members"] == (3 if strategy == "qbc" else 1)

    matrix = embeddings.embeddings_load(pool)
    X = np.asarray(matrix.vectors)
    np.testing.assert_array_equal(served.predict_proba(X), served.head.predict_proba(X))
    assert not np.allclose(served.predict_proba(X), served.committee.predict_proba(X))
    run = job.scoring_run
    assert run.status == ScoringRun.Status.SUCCEEDED and "uncertainty" not in run.timings  # the committee's score
    entries = list(QueueEntry.objects.filter(project=pool, run=run).order_by("-priority"))
    labelled = set(Item.objects.filter(project=pool, final_label__isnull=False).values_list("pk", flat=True))
    candidates = np.array(sorted(set(matrix.ids.tolist()) - labelled))
    scores = getattr(S, {"qbc": "vote_entropy", "bald": "bald"}[strategy])(
        served.committee.predict_proba_members(vectors_of(pool, candidates))
    )
    expected = candidates[S.top_k(scores, pool.batch_size).numpy()]
    assert [e.item_id for e in entries] == expected.tolist()
    # suggestions come from the serving head
    probs = served.head.predict_proba(vectors_of(pool, [e.item_id for e in entries]))
    assert [e.suggested_confidence for e in entries] == pytest.approx(probs.max(1).tolist(), abs=1e-6)
