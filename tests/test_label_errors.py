"""Label-error review: out-of-fold probabilities and confident learning (hand-worked examples), the
acquisition service that flags consensus labels, the people-side service that opens review tasks
(gold and reviewed labels never, the cap, never twice), and the loop that runs it after a retrain."""

import re

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from acquisition import label_errors as cl
from acquisition.models import TrainingJob
from acquisition.services.label_errors import label_errors_find
from annotation import routing
from annotation.models import (
    Annotation,
    Item,
    ItemStatus,
    LabelSource,
    ReviewStatus,
    ReviewTask,
    Role,
)
from annotation.selectors import review_payloads
from annotation.services import membership_set, review_resolve
from annotation.services.review import SuspectedLabelError, label_error_reviews_open
from loop import tasks as loop_tasks
from loop.services import training

from .pools import cluster_pool

# ------------------------------------------------------------------ confident learning, by hand

# 12 items, 3 classes; item 3 (labelled 0) looks like class 1, item 7 (labelled 1) like class 2.
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
PROBS = np.array(
    [
        [0.90, 0.05, 0.05],
        [0.80, 0.10, 0.10],
        [0.70, 0.20, 0.10],
        [0.10, 0.85, 0.05],  # flipped: truly 1
        [0.10, 0.80, 0.10],
        [0.20, 0.70, 0.10],
        [0.05, 0.90, 0.05],
        [0.15, 0.05, 0.80],  # flipped: truly 2
        [0.10, 0.10, 0.80],
        [0.05, 0.05, 0.90],
        [0.10, 0.20, 0.70],
        [0.20, 0.10, 0.70],
    ]
)


def test_thresholds_are_the_mean_self_confidence_of_each_class():
    # t0 = (.9+.8+.7+.1)/4, t1 = (.8+.7+.9+.05)/4, t2 = (.8+.9+.7+.7)/4
    assert np.allclose(cl.confident_thresholds(LABELS, PROBS), [0.625, 0.6125, 0.775])
    # a class nobody labelled: nothing can be counted into it
    assert cl.confident_thresholds(LABELS, np.c_[PROBS, np.zeros(12)])[3] == 2.0


def test_the_confident_joint_counts_items_over_their_class_threshold():
    # Items 10 and 11 pass no threshold (.7 < .775) and are not counted: row 2 holds 2 of its 4;
    # calibration scales every row to its label count (4).
    assert cl.confident_joint(LABELS, PROBS, calibrate=False).tolist() == [[3, 1, 0], [0, 3, 1], [0, 0, 2]]
    assert cl.confident_joint(LABELS, PROBS).tolist() == [[3, 1, 0], [0, 3, 1], [0, 0, 4]]


def test_flipped_labels_are_found_ranked_with_the_models_alternative():
    issues = cl.find_label_issues(LABELS, PROBS)
    assert np.flatnonzero(issues).tolist() == [3, 7]
    # lowest self-confidence first: p(1 | item 7) = .05 < p(0 | item 3) = .10
    assert cl.ranked_label_issues(LABELS, PROBS).tolist() == [7, 3]
    other, p = cl.model_alternative(LABELS, PROBS)
    assert other[[3, 7]].tolist() == [1, 2] and np.allclose(p[[3, 7]], [0.85, 0.80])


def test_a_label_the_model_still_prefers_is_never_an_issue():
    probs = PROBS.copy()
    probs[3] = [0.46, 0.44, 0.10]  # counted as class 0 now; and its label is the arg-max
    assert not cl.find_label_issues(LABELS, probs)[3]


def test_a_class_with_a_single_label_is_never_pruned():
    labels = np.array([0, 0, 0, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.85, 0.15], [0.9, 0.1]])  # the lone 1 looks like a 0
    assert not cl.find_label_issues(labels, probs).any()


def test_rounding_keeps_every_row_total():
    matrix = np.array([[1.4, 1.4, 1.2], [0.5, 0.5, 0.0], [2.6, 0.2, 0.2]])
    rounded = cl._round_preserving_row_totals(matrix)
    assert rounded.sum(axis=1).tolist() == [4, 1, 3] and np.abs(rounded - matrix).max() < 1


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="labels must lie"):
        cl.find_label_issues(np.array([0, 3]), np.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="integer"):
        cl.find_label_issues(np.array([0.0, 1.0]), np.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="two labels"):
        cl.out_of_fold_proba(LogisticRegression(), np.eye(3), np.array([0, 1, 2]), n_classes=3)


# ------------------------------------------------------------------ out of fold


def test_folds_are_five_or_the_largest_class():
    assert cl.fold_count(np.repeat([0, 1], [10, 10])) == 5
    assert cl.fold_count(np.repeat([0, 1, 2], [3, 1, 2])) == 3
    assert cl.fold_count(np.array([0, 1, 2])) == 1


def test_out_of_fold_probabilities_come_from_models_that_never_saw_the_label():
    # Two tight clusters; item 0 sits in cluster 0 but is labelled 1. A 1-nearest-neighbour model
    # would return every label it was trained on; out of fold it answers with the cluster.
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 0.1, (10, 2)), rng.normal(5, 0.1, (10, 2))]
    y = np.repeat([0, 1], 10)
    y[0] = 1
    proba = cl.out_of_fold_proba(KNeighborsClassifier(n_neighbors=1), X, y, n_classes=3)
    assert proba.shape == (20, 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert proba[0].tolist() == [1.0, 0.0, 0.0]  # in sample it would say 1
    assert (proba[10:, 1] == 1.0).all()


def test_a_class_missing_from_a_training_fold_gets_no_probability():
    X = np.r_[np.zeros((6, 1)), np.ones((6, 1)), [[2.0]]]
    y = np.r_[np.zeros(6, int), np.ones(6, int), [2]]
    proba = cl.out_of_fold_proba(LogisticRegression(), X, y, n_classes=3)
    assert proba[12, 2] == 0.0  # the lone class-2 label: no fold saw class 2 when judging it


def test_sample_weights_reach_the_heads():
    seen = []

    class Recorder(LogisticRegression):
        def fit(self, X, y, sample_weight=None):
            seen.append(sample_weight)
            return super().fit(X, y, sample_weight=sample_weight)

    X = np.r_[np.zeros((4, 1)), np.ones((4, 1))]
    y = np.repeat([0, 1], 4)
    cl.out_of_fold_proba(Recorder(), X, y, sample_weight=np.linspace(0.1, 0.8, 8))
    assert len(seen) == 4 and all(w is not None and len(w) == 6 for w in seen)


def test_the_finder_recovers_random_flips_on_separable_data():
    rng = np.random.default_rng(1)
    n_classes, per_class = 6, 60
    centres = rng.normal(0, 4, (n_classes, 10))
    X = np.concatenate([centres[c] + rng.normal(size=(per_class, 10)) for c in range(n_classes)])
    truth = np.repeat(np.arange(n_classes), per_class)
    y = truth.copy()
    flipped = rng.choice(y.size, size=36, replace=False)
    y[flipped] = (truth[flipped] + rng.integers(1, n_classes, flipped.size)) % n_classes
    finder = cl.LabelErrorFinder(random_state=0).fit(X, y, n_classes=n_classes)
    found = set(np.flatnonzero(finder.issues_).tolist())
    hits = len(found & set(flipped.tolist()))
    assert finder.n_splits_ == 5 and hits / len(found) >= 0.9 and hits / flipped.size >= 0.9
    assert set(finder.ranking_.tolist()) == found
    assert (finder.alternative_[flipped] == truth[flipped]).mean() >= 0.9


# ------------------------------------------------------------------ the project's labels

DIM, PER_CLUSTER = 8, 40


@pytest.fixture(autouse=True)
def small_committee(settings, tmp_path):
    settings.QUORUM_CACHE_DIR = tmp_path / "cache"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.QUORUM_LABEL_ERROR_CAP = 20


@pytest.fixture
def sent(monkeypatch):
    """Training jobs and scoring runs sent to the broker are not run."""
    monkeypatch.setattr(loop_tasks.training_job_run, "apply_async", lambda *a, **k: None)
    monkeypatch.setattr(loop_tasks.scoring_run_execute, "apply_async", lambda *a, **k: None)


@pytest.fixture
def pool(make_project):
    """Three separable clusters of 40 items in 8-d, one per label, every item final with its
    cluster's label (consensus) except the ``flipped`` ones, labelled one class further."""
    project = make_project("Errors", labels=("a", "b", "c"), embedding_dim=DIM, batch_size=12, retrain_after=30)
    items = cluster_pool(project, per_cluster=PER_CLUSTER, dim=DIM, scale=0.35, spread=3.0)
    labels = list(project.labels.order_by("order", "pk"))
    project.label_list = labels
    project.cluster_of = {item.pk: i // PER_CLUSTER for i, item in enumerate(items)}
    project.flipped = [items[c * PER_CLUSTER + i].pk for c in range(3) for i in (0, 1)]  # 6 of 120
    for item in items:
        shift = 1 if item.pk in project.flipped else 0
        Item.objects.filter(pk=item.pk).update(
            final_label=labels[(project.cluster_of[item.pk] + shift) % 3],
            final_confidence=0.95,
            final_source=LabelSource.CONSENSUS,
            status=ItemStatus.FINALIZED,
            finalized_at=timezone.now(),
        )
    return project


def truth_of(project, pk):
    return project.label_list[project.cluster_of[pk]]


def suspects_of(scan):
    return [
        SuspectedLabelError(
            item_id=f.item_id,
            given_label_id=f.given_label_id,
            model_label_id=f.model_label_id,
            model_confidence=f.model_probability,
        )
        for f in scan.flags
    ]


def label_error_tasks(project):
    return ReviewTask.objects.filter(project=project, reason=routing.ReviewReason.LABEL_ERROR)


@pytest.mark.django_db
def test_the_scan_flags_the_flipped_consensus_labels_with_the_true_class(pool):
    scan = label_errors_find(project=pool, seed=0)
    assert scan.n_labels == 120 and scan.n_folds == 5
    flagged = {f.item_id: f for f in scan.flags}
    assert set(flagged) == set(pool.flipped)
    for pk, flag in flagged.items():
        assert flag.model_label_id == truth_of(pool, pk).pk and flag.model_label == truth_of(pool, pk).name
        assert flag.given_label_id != flag.model_label_id and flag.model_probability > 0.5
    ranks = [f.given_probability for f in scan.flags]
    assert ranks == sorted(ranks)


@pytest.mark.django_db
def test_gold_and_reviewed_labels_are_never_flagged(pool):
    gold, reviewed = pool.flipped[0], pool.flipped[2]
    Item.objects.filter(pk=gold).update(final_source=LabelSource.GOLD)
    Item.objects.filter(pk=reviewed).update(final_source=LabelSource.REVIEW)
    scan = label_errors_find(project=pool, seed=0)
    assert scan.n_issues >= len(pool.flipped)  # they are still judged (and found) ...
    assert {f.item_id for f in scan.flags} == set(pool.flipped) - {gold, reviewed}  # ... never flagged
    # and the people side refuses them too, whoever asks
    wrong = [
        SuspectedLabelError(pk, Item.objects.get(pk=pk).final_label_id, truth_of(pool, pk).pk, 0.9)
        for pk in (gold, reviewed)
    ]
    assert label_error_reviews_open(project=pool, suspects=wrong, cap=10) == []


@pytest.mark.django_db
def test_too_few_labels_make_an_empty_scan(make_project):
    project = make_project("Tiny", labels=("a", "b"), embedding_dim=DIM)
    scan = label_errors_find(project=project)
    assert scan.flags == [] and scan.n_folds == 0


@pytest.mark.django_db
def test_review_tasks_open_up_to_the_cap_surest_first_and_never_twice(pool):
    scan = label_errors_find(project=pool, seed=0)
    opened = label_error_reviews_open(project=pool, suspects=suspects_of(scan), cap=4)
    assert [t.item_id for t in opened] == [f.item_id for f in scan.flags[:4]]
    for task in opened:
        task.refresh_from_db()
        item = Item.objects.get(pk=task.item_id)
        assert task.status == ReviewStatus.OPEN and task.model_label_id == truth_of(pool, item.pk).pk
        assert task.model_confidence == pytest.approx(
            next(f for f in scan.flags if f.item_id == item.pk).model_probability
        )
        # the label keeps counting until a reviewer decides
        assert item.status == ItemStatus.FINALIZED and item.final_source == LabelSource.CONSENSUS
    # the next round: the open ones are not opened again, the cap brings the rest
    again = label_error_reviews_open(project=pool, suspects=suspects_of(scan), cap=4)
    assert {t.item_id for t in again} == {f.item_id for f in scan.flags[4:]}
    assert label_error_reviews_open(project=pool, suspects=suspects_of(scan), cap=4) == []
    assert label_error_tasks(pool).count() == len(pool.flipped)


@pytest.mark.django_db
def test_a_cap_of_zero_opens_nothing(pool):
    scan = label_errors_find(project=pool, seed=0)
    assert label_error_reviews_open(project=pool, suspects=suspects_of(scan), cap=0) == []
    assert not label_error_tasks(pool).exists()


@pytest.mark.django_db
def test_stale_or_invalid_suspects_are_skipped(pool, make_project):
    first, second, third = pool.flipped[:3]
    judged = Item.objects.get(pk=first).final_label_id
    Item.objects.filter(pk=first).update(final_label=truth_of(pool, first))  # relabelled since the judgement
    given = {pk: Item.objects.get(pk=pk).final_label_id for pk in (second, third)}
    elsewhere = make_project("Else", labels=("x", "y")).labels.first()
    suspects = [
        SuspectedLabelError(first, judged, truth_of(pool, first).pk, 0.9),
        SuspectedLabelError(second, given[second], given[second], 0.9),  # no alternative
        SuspectedLabelError(third, given[third], elsewhere.pk, 0.9),  # another project's label
    ]
    assert label_error_reviews_open(project=pool, suspects=suspects, cap=10) == []


@pytest.mark.django_db
def test_an_item_with_an_open_review_is_left_alone(pool):
    pk = pool.flipped[0]
    ReviewTask.objects.create(project=pool, item_id=pk, reason=routing.ReviewReason.LOW_CONFIDENCE)
    suspect = SuspectedLabelError(pk, Item.objects.get(pk=pk).final_label_id, truth_of(pool, pk).pk, 0.9)
    assert label_error_reviews_open(project=pool, suspects=[suspect], cap=5) == []


@pytest.mark.django_db
def test_a_label_a_reviewer_confirmed_is_not_questioned_again(pool, make_user):
    reviewer = make_user("rev")
    membership_set(project=pool, username="rev", role=Role.REVIEWER)
    pk = pool.flipped[0]
    given = Item.objects.get(pk=pk).final_label
    suspect = SuspectedLabelError(pk, given.pk, truth_of(pool, pk).pk, 0.9)
    [task] = label_error_reviews_open(project=pool, suspects=[suspect], cap=5)
    review_resolve(review_id=task.pk, user=reviewer, label=given.name)  # the reviewer keeps the label
    item = Item.objects.get(pk=pk)
    assert item.final_source == LabelSource.REVIEW and item.final_label_id == given.pk
    assert label_error_reviews_open(project=pool, suspects=[suspect], cap=5) == []
    # even should the item ever be a consensus label again, the same label is not questioned twice
    Item.objects.filter(pk=pk).update(final_source=LabelSource.CONSENSUS)
    assert label_error_reviews_open(project=pool, suspects=[suspect], cap=5) == []


@pytest.mark.django_db
def test_the_review_payload_shows_the_models_alternative_and_the_decision_is_final(pool, make_user):
    reviewer = make_user("rev")
    membership_set(project=pool, username="rev", role=Role.REVIEWER)
    annotator = make_user("ann")
    pk = pool.flipped[0]
    item = Item.objects.get(pk=pk)
    Annotation.objects.create(project=pool, item=item, user=annotator, label=item.final_label)
    suspect = SuspectedLabelError(pk, item.final_label_id, truth_of(pool, pk).pk, 0.87)
    [task] = label_error_reviews_open(project=pool, suspects=[suspect], cap=5)
    [payload] = review_payloads([task])
    assert payload["reason"] == "label_error"
    assert payload["model_prediction"] == {"label": truth_of(pool, pk).name, "confidence": pytest.approx(0.87)}
    assert [a["label"] for a in payload["annotations"]] == [item.final_label.name]
    assert payload["posterior"] and payload["posterior"][0]["label"] == item.final_label.name
    review_resolve(review_id=task.pk, user=reviewer, label=truth_of(pool, pk).name)
    item.refresh_from_db()
    assert item.final_label_id == truth_of(pool, pk).pk and item.final_source == LabelSource.REVIEW


# ------------------------------------------------------------------ the loop


def run_job(project):
    job = training.training_job_request(project=project, trigger="manual")
    assert job is not None
    training.training_job_execute(job.pk)
    job.refresh_from_db()
    return job


@pytest.mark.django_db
def test_a_training_job_opens_label_error_reviews_once(pool, sent):
    job = run_job(pool)
    assert job.status == TrainingJob.Status.SUCCEEDED
    tasks = label_error_tasks(pool)
    assert {t.item_id for t in tasks} == set(pool.flipped)
    assert all(t.model_label_id == truth_of(pool, t.item_id).pk for t in tasks)
    report = job.timings["label_error_review"]
    assert report["status"] == "done" and report["labels"] == 120 and report["opened"] == len(pool.flipped)
    assert report["flagged"] == len(pool.flipped) and report["cap"] == 20 and "label_errors" in job.timings
    # the next retrain finds the same labels and opens nothing new
    again = run_job(pool)
    assert again.timings["label_error_review"]["opened"] == 0
    assert label_error_tasks(pool).count() == len(pool.flipped)


@pytest.mark.django_db
def test_the_per_round_cap_holds_in_the_loop(pool, sent, settings):
    settings.QUORUM_LABEL_ERROR_CAP = 2
    job = run_job(pool)
    assert job.timings["label_error_review"]["opened"] == 2 and label_error_tasks(pool).count() == 2
    run_job(pool)
    assert label_error_tasks(pool).count() == 4


@pytest.mark.django_db
def test_a_cap_of_zero_turns_the_check_off(pool, sent, settings):
    settings.QUORUM_LABEL_ERROR_CAP = 0
    job = run_job(pool)
    assert job.timings["label_error_review"] == {"status": "off", "cap": 0}
    assert not label_error_tasks(pool).exists()


@pytest.mark.django_db
def test_a_failing_check_leaves_the_job_succeeded_and_says_why(pool, sent, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(training, "label_errors_find", broken)
    job = run_job(pool)
    assert job.status == TrainingJob.Status.SUCCEEDED and job.outcome == "promoted"
    assert job.timings["label_error_review"]["status"] == "failed"
    assert "disk full" in job.timings["label_error_review"]["error"]


@pytest.mark.django_db
def test_my_projects_counts_label_error_reviews_among_the_open_ones(pool, client_for, admin_user):
    pk = pool.flipped[0]
    suspect = SuspectedLabelError(pk, Item.objects.get(pk=pk).final_label_id, truth_of(pool, pk).pk, 0.9)
    label_error_reviews_open(project=pool, suspects=[suspect], cap=5)
    Item.objects.filter(pk=pool.flipped[1]).update(status=ItemStatus.IN_REVIEW)  # one in review the usual way
    html = client_for(admin_user).get(reverse("home")).content.decode()
    link = re.search(rf'<a[^>]*href="{reverse("review", args=[pool.pk])}"[^>]*>(.*?)</a>', html, re.S)
    assert link and '<span class="review-count">2</span>' in link.group(1)
