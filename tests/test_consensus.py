"""Consensus in the loop: the routing rules per policy band, adaptive redundancy, Dawid-Skene on the
submit path, and the whole-project aggregation against ``annotation.agreement``."""

from __future__ import annotations

import numpy as np
import pytest

from acquisition.models import ScoringRun
from annotation import agreement, routing, services
from annotation.dawid_skene import DawidSkene
from annotation.models import (
    AgreementSnapshot,
    Annotation,
    AnnotatorQuality,
    Assignment,
    Item,
    ItemStatus,
    LabelClass,
    LabelSource,
    QueueEntry,
    QueueReason,
    ReviewStatus,
    ReviewTask,
    Role,
)
from annotation.routing import Outcome, Policy, ReviewReason
from annotation.services.aggregation import ds_model, project_aggregate
from tests.invariants import annotate_directly, assert_queue_consistent, enqueue, make_items

LABELS = ("refund", "card_lost", "other")


# --- the pure rules --------------------------------------------------------------------------


def decide(posterior, labels, *, needed=2, per_item=2, cap=3, conf=0.8, policy=Policy.DISAGREEMENTS):
    return routing.route(
        np.asarray(posterior, dtype=float),
        labels,
        labels_needed=needed,
        labels_per_item=per_item,
        max_labels=cap,
        min_confidence=conf,
        policy=policy,
    )


@pytest.mark.parametrize(
    ("posterior", "labels", "kwargs", "outcome", "reason"),
    [
        # unanimous and confident: final in the two upper bands, reviewed in the lowest
        ([1.0, 0, 0], [0, 0], {}, Outcome.FINAL, None),
        ([1.0, 0, 0], [0, 0], {"policy": Policy.CONFIDENCE}, Outcome.FINAL, None),
        ([1.0, 0, 0], [0, 0], {"policy": Policy.ALL}, Outcome.REVIEW, ReviewReason.POLICY_ALL),
        # one label is not "multi-labelled": the lowest band does not force a review
        ([1.0, 0, 0], [0], {"policy": Policy.ALL, "needed": 1, "per_item": 1}, Outcome.FINAL, None),
        # a 1:1 split: the middle band never finalises it, the top band does when DS is confident
        ([0.9, 0.1, 0], [0, 1], {}, Outcome.EXTRA_LABEL, None),
        ([0.9, 0.1, 0], [0, 1], {"policy": Policy.CONFIDENCE}, Outcome.FINAL, None),
        ([0.9, 0.1, 0], [0, 1], {"cap": 2}, Outcome.REVIEW, ReviewReason.DISAGREEMENT),
        # 2:1 has a majority: final when confident enough
        ([0.9, 0.1, 0], [0, 1, 0], {"needed": 3}, Outcome.FINAL, None),
        ([2 / 3, 1 / 3, 0], [0, 1, 0], {"needed": 3}, Outcome.REVIEW, ReviewReason.MAX_LABELS),
        ([2 / 3, 1 / 3, 0], [0, 1, 0], {"needed": 3, "conf": 0.6}, Outcome.FINAL, None),
        # unanimous but not confident (poor annotators): one more label, then review
        ([0.5, 0.3, 0.2], [0, 0], {}, Outcome.EXTRA_LABEL, None),
        ([0.5, 0.3, 0.2], [0, 0], {"cap": 2}, Outcome.REVIEW, ReviewReason.LOW_CONFIDENCE),
        # the confidence threshold is inclusive
        ([0.8, 0.2, 0], [0, 0], {}, Outcome.FINAL, None),
    ],
)
def test_route(posterior, labels, kwargs, outcome, reason):
    decision = decide(posterior, labels, **kwargs)
    assert decision.outcome == outcome
    assert decision.reason == reason
    if outcome is Outcome.FINAL:
        assert decision.label == int(np.argmax(posterior))
        assert decision.confidence == pytest.approx(max(posterior))


@pytest.mark.parametrize(
    ("kappa", "overlap", "policy"),
    [
        (0.5, 100, Policy.ALL),
        (0.6, 100, Policy.DISAGREEMENTS),
        (0.79, 100, Policy.DISAGREEMENTS),
        (0.8, 100, Policy.CONFIDENCE),
        (0.95, 100, Policy.CONFIDENCE),
        (0.1, routing.MIN_OVERLAP_ITEMS - 1, Policy.DISAGREEMENTS),  # too little overlap: middle
        (None, 100, Policy.DISAGREEMENTS),
        (float("nan"), 100, Policy.DISAGREEMENTS),
    ],
)
def test_review_policy_bands(kappa, overlap, policy):
    assert routing.review_policy(kappa, overlap, review_all_below=0.6, review_disagreements_below=0.8) == policy


def test_review_policy_thresholds_are_configurable():
    assert routing.review_policy(0.7, 50, review_all_below=0.75, review_disagreements_below=0.9) == Policy.ALL
    assert routing.review_policy(0.7, 50, review_all_below=0.2, review_disagreements_below=0.5) == Policy.CONFIDENCE


def test_label_value_is_one_minus_the_margin():
    values = routing.label_value([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.7, 0.2, 0.1]])
    assert values == pytest.approx([1.0, 0.0, 0.5])


def test_extra_label_priorities_are_placed_by_rank_among_new_items():
    stored = [10.0, 8.0, 6.0, 4.0, 2.0]  # rank values 1, .8, .6, .4, .2
    placed = routing.priorities_on_queue_scale([1.0, 0.8, 0.7, 0.5, 0.0], stored)
    assert placed[0] > 10.0  # a tie beats the whole batch
    assert placed[1] == pytest.approx(8.0)
    assert placed[2] == pytest.approx(7.0)  # halfway between the 2nd and 3rd new item
    assert placed[3] == pytest.approx(5.0)
    assert placed[4] < 2.0  # worth less than every new item
    assert list(placed) == sorted(placed, reverse=True)
    # any monotone scale of the acquisition side gives the same order (cold-start ranks, -item id)
    for scale in ([0.0, -1.0, -2.0, -3.0, -4.0], [-11.0, -12.0, -13.0, -40.0, -50.0]):
        order = np.argsort(-np.concatenate([scale, routing.priorities_on_queue_scale([0.7], scale)]), kind="stable")
        assert order.tolist().index(5) == 2  # after two new items, as on the first scale
    assert routing.priorities_on_queue_scale([0.3], []) == pytest.approx([0.3])


def test_item_posterior_is_the_dawid_skene_e_step():
    rng = np.random.default_rng(0)
    n_items, n_workers, n_classes = 300, 5, 3
    truth = rng.integers(0, n_classes, n_items)
    items = np.repeat(np.arange(n_items), n_workers)
    workers = np.tile(np.arange(n_workers), n_items)
    accuracy = np.array([0.9, 0.85, 0.8, 0.6, 0.4])[workers]
    labels = np.where(rng.random(items.size) < accuracy, truth[items], rng.integers(0, n_classes, items.size))
    model = DawidSkene(tol=1e-12, max_iter=500).fit(items, workers, labels)
    for i in range(10):
        rows = items == i
        posterior = routing.item_posterior(labels[rows], model.confusion_[workers[rows]], model.priors_)
        assert posterior == pytest.approx(model.posteriors_[i], abs=1e-6)


def test_disputed_means_no_strict_majority():
    assert routing.disputed([0, 1]) and routing.disputed([0, 1, 2]) and routing.disputed([0, 0, 1, 1])
    assert not routing.disputed([0, 0]) and not routing.disputed([0, 1, 0]) and not routing.disputed([3])


# --- through the services --------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_refill(recording_supply):
    """Refills are recorded, never requested (no scoring runs are started)."""


@pytest.fixture
def scored(project):
    """A succeeded scoring run: no fallback filling of the queue with planted items."""
    return ScoringRun.objects.create(project=project, strategy="margin", status=ScoringRun.Status.SUCCEEDED)


@pytest.fixture
def annotators(member):
    return [member(f"ann{i}") for i in range(4)]


def label_of(project, name):
    return LabelClass.objects.get(project=project, name=name)


def take(project, user):
    result = services.assignment_next(project=project, user=user)
    assert result.assignment is not None, result.code
    return result.assignment


def submit(project, user, name):
    assignment = take(project, user)
    services.annotation_submit(assignment_id=assignment.pk, user=user, label=name)
    return assignment.item_id


def snapshot(project, kappa, overlap=100):
    return AgreementSnapshot.objects.create(
        project=project,
        computed_at=project.created_at,
        project_kappa=kappa,
        n_overlap_items=overlap,
        policy="",
    )


def plant(project, users, accuracy, n_items, *, seed=0, prefix="p", spam=None):
    """Items labelled by every one of ``users`` (no queue): user u is right with probability
    ``accuracy[u]``, else answers uniformly at random; ``spam[u]`` = a label u always gives."""
    rng = np.random.default_rng(seed)
    items = make_items(project, n_items, prefix=prefix)
    labels = list(LabelClass.objects.filter(project=project).order_by("order", "id"))
    truth = rng.integers(0, len(labels), n_items)
    answers = []
    for i, item in enumerate(items):
        for u, user in enumerate(users):
            if spam and u in spam:
                answer = spam[u]
            elif rng.random() < accuracy[u]:
                answer = truth[i]
            else:
                answer = rng.integers(0, len(labels))
            answers.append((item, user, labels[int(answer)]))
    annotate_directly(project, answers)
    # decided earlier (as the submit path would have): consensus items with the true label
    for t in set(truth.tolist()):
        Item.objects.filter(pk__in=[item.pk for item, x in zip(items, truth, strict=True) if x == t]).update(
            status=ItemStatus.FINALIZED, final_label=labels[t], final_confidence=1.0, final_source=LabelSource.CONSENSUS
        )
    return items, [labels[t] for t in truth]


@pytest.mark.django_db
def test_adaptive_redundancy_extra_label_then_review_at_the_cap(project, annotators, scored):
    a, b, c = annotators[:3]
    items = make_items(project, 6)
    enqueue(project, items, suggested_label_id=label_of(project, "other").pk, suggested_confidence=0.55)
    first = submit(project, a, "refund")
    assert submit(project, b, "other") == first
    entry = QueueEntry.objects.get(item_id=first)
    assert entry.labels_needed == 3 and entry.reason == QueueReason.EXTRA_LABEL
    head = QueueEntry.objects.exclude(pk=entry.pk).order_by("-priority").first()
    assert entry.priority > head.priority  # a 1:1 split is worth more than any new item
    assert take(project, c).item_id == first
    assert_queue_consistent(project)

    c_assignment = Assignment.objects.get(item_id=first, user=c)
    services.annotation_submit(assignment_id=c_assignment.pk, user=c, label="card_lost")
    item = Item.objects.get(pk=first)
    assert item.status == ItemStatus.IN_REVIEW and item.final_label is None
    task = ReviewTask.objects.get(item=item)
    assert task.status == ReviewStatus.OPEN and task.reason == ReviewReason.MAX_LABELS
    assert task.model_label.name == "other" and task.model_confidence == pytest.approx(0.55)
    assert sum(task.posterior.values()) == pytest.approx(1.0, abs=1e-3)
    assert task.priority == pytest.approx(1.0)  # three-way tie
    assert not QueueEntry.objects.filter(item=item).exists()
    assert_queue_consistent(project)


@pytest.mark.django_db
def test_majority_after_the_extra_label_finalises_when_confident_enough(project, annotators, scored):
    project.min_consensus_confidence = 0.6
    project.save()
    a, b, c = annotators[:3]
    enqueue(project, make_items(project, 3))
    first = submit(project, a, "refund")
    submit(project, b, "other")
    submit(project, c, "refund")
    item = Item.objects.get(pk=first)
    assert item.status == ItemStatus.FINALIZED and item.final_label.name == "refund"
    assert item.final_confidence == pytest.approx(2 / 3) and item.final_source == LabelSource.CONSENSUS
    assert_queue_consistent(project)


@pytest.mark.django_db
def test_without_extra_labels_a_disagreement_goes_straight_to_review(project, annotators, scored):
    project.max_labels_per_item = 2
    project.save()
    enqueue(project, make_items(project, 2))
    first = submit(project, annotators[0], "refund")
    submit(project, annotators[1], "other")
    assert ReviewTask.objects.get(item_id=first).reason == ReviewReason.DISAGREEMENT


@pytest.mark.django_db
def test_low_project_kappa_reviews_even_unanimous_items(project, annotators, scored):
    snapshot(project, kappa=0.4)
    enqueue(project, make_items(project, 2))
    first = submit(project, annotators[0], "refund")
    submit(project, annotators[1], "refund")
    assert Item.objects.get(pk=first).status == ItemStatus.IN_REVIEW
    assert ReviewTask.objects.get(item_id=first).reason == ReviewReason.POLICY_ALL
    assert_queue_consistent(project)


@pytest.mark.django_db
def test_thresholds_move_the_bands(project, annotators, scored):
    snapshot(project, kappa=0.4)
    project.review_all_below_kappa = 0.3
    project.save()
    enqueue(project, make_items(project, 2))
    first = submit(project, annotators[0], "refund")
    submit(project, annotators[1], "refund")
    item = Item.objects.get(pk=first)
    assert item.status == ItemStatus.FINALIZED and item.final_confidence == 1.0


@pytest.mark.django_db
def test_too_little_overlap_uses_the_middle_policy(project, annotators, scored):
    snapshot(project, kappa=0.1, overlap=routing.MIN_OVERLAP_ITEMS - 1)
    enqueue(project, make_items(project, 2))
    first = submit(project, annotators[0], "refund")
    submit(project, annotators[1], "refund")
    assert Item.objects.get(pk=first).status == ItemStatus.FINALIZED


def trusting(project):
    """Top band whatever the kappa (the tests below isolate Dawid-Skene's effect)."""
    project.review_all_below_kappa = -1
    project.review_disagreements_below_kappa = -1
    project.save()


@pytest.mark.django_db
def test_dawid_skene_trusts_the_good_annotator_over_a_known_poor_one(project, annotators, scored):
    good, other_good, poor = annotators[:3]
    trusting(project)
    plant(project, [good, other_good, poor], [0.97, 0.95, 0.0], 80)
    project_aggregate(project=project)
    quality = dict(AnnotatorQuality.objects.filter(project=project).values_list("user__username", "ds_accuracy"))
    assert quality[poor.username] < 0.5 < 0.9 < quality[good.username]

    enqueue(project, make_items(project, 2, prefix="new"))
    first = submit(project, poor, "refund")
    assert submit(project, good, "other") == first
    item = Item.objects.get(pk=first)
    # majority vote would call this a 1:1 tie; Dawid-Skene finalises the good annotator's label
    assert item.status == ItemStatus.FINALIZED and item.final_label.name == "other"
    assert item.final_confidence >= project.min_consensus_confidence
    assert_queue_consistent(project)


@pytest.mark.django_db
def test_dawid_skene_does_not_trust_two_agreeing_spammers(project, annotators, scored):
    good, other_good, spam1, spam2 = annotators
    trusting(project)
    refund = LABELS.index("refund")
    plant(project, annotators, [0.95, 0.95, 0, 0], 80, spam={2: refund, 3: refund})
    project_aggregate(project=project)
    enqueue(project, make_items(project, 2, prefix="new"))
    first = submit(project, spam1, "refund")
    submit(project, spam2, "refund")
    # unanimous, so majority vote says 1.0; the spammers' answers carry no information
    entry = QueueEntry.objects.get(item_id=first)
    assert entry.reason == QueueReason.EXTRA_LABEL and entry.labels_needed == 3
    assert Item.objects.get(pk=first).status == ItemStatus.IN_PROGRESS


@pytest.mark.django_db
def test_two_agreeing_labels_from_known_good_annotators_are_final_without_a_third(project, annotators, scored):
    good, other_good, third = annotators[:3]
    plant(project, [good, other_good, third], [0.95, 0.92, 0.9], 80)
    project_aggregate(project=project)  # the project's own review policy and thresholds
    enqueue(project, make_items(project, 1, prefix="new"))
    first = submit(project, good, "card_lost")
    assert submit(project, other_good, "card_lost") == first
    item = Item.objects.get(pk=first)
    assert item.status == ItemStatus.FINALIZED and item.final_label.name == "card_lost"
    assert item.final_confidence >= project.min_consensus_confidence
    assert not QueueEntry.objects.filter(item_id=first).exists()  # no third label asked for


@pytest.mark.django_db
def test_unknown_annotator_falls_back_to_majority_vote(project, annotators, scored, member):
    trusting(project)
    good, other_good, poor = annotators[:3]
    plant(project, [good, other_good, poor], [0.97, 0.95, 0.0], 40)
    project_aggregate(project=project)
    newcomer = member("newcomer")
    enqueue(project, make_items(project, 2, prefix="new"))
    first = submit(project, newcomer, "refund")
    submit(project, good, "other")
    assert QueueEntry.objects.get(item_id=first).reason == QueueReason.EXTRA_LABEL  # MV: a 1:1 tie


# --- the whole-project aggregation -----------------------------------------------------------


def arrays(project):
    rows = np.array(list(Annotation.objects.filter(project=project).values_list("item_id", "user_id", "label_id")))
    _, items = np.unique(rows[:, 0], return_inverse=True)
    users, workers = np.unique(rows[:, 1], return_inverse=True)
    label_ids = list(LabelClass.objects.filter(project=project).order_by("order", "id").values_list("id", flat=True))
    labels = np.array([label_ids.index(x) for x in rows[:, 2]])
    return items, workers, labels, users


@pytest.mark.django_db
def test_snapshot_numbers_match_the_agreement_module(project, annotators):
    users = annotators
    plant(project, users[:3], [0.9, 0.8, 0.6], 60, seed=1)
    plant(project, users[1:], [0.8, 0.6, 0.7], 30, seed=2, prefix="q")
    snap = project_aggregate(project=project)
    items, workers, labels, user_ids = arrays(project)
    sizes = {"n_classes": 3}
    matrix, overlap = agreement.pairwise_kappa(items, workers, labels, **sizes, return_overlap=True)
    upper = np.triu(np.ones_like(overlap, dtype=bool), 1) & (overlap >= agreement.MIN_OVERLAP) & np.isfinite(matrix)
    assert snap.project_kappa == pytest.approx(np.average(matrix[upper], weights=overlap[upper]))
    assert snap.fleiss_kappa == pytest.approx(agreement.fleiss_kappa(items, workers, labels, **sizes))
    assert snap.krippendorff_alpha == pytest.approx(agreement.krippendorff_alpha(items, workers, labels, **sizes))
    names = [next(u.username for u in users if u.pk == pk) for pk in user_ids]
    assert snap.kappa_matrix["annotators"] == names
    stored = np.array([[np.nan if v is None else v for v in row] for row in snap.kappa_matrix["values"]])
    np.testing.assert_allclose(stored, matrix, equal_nan=True)
    assert snap.n_annotations == 60 * 3 + 30 * 3 and snap.n_overlap_items == 90
    model = ds_model().fit(items, workers, labels, n_classes=3)  # the loop's aggregator
    by_name = {a["username"]: a for a in snap.annotators}
    for r, name in enumerate(names):
        assert by_name[name]["ds_accuracy"] == pytest.approx(model.skills_[r])
        assert by_name[name]["n_annotations"] == int((workers == r).sum())
        assert by_name[name]["gold_accuracy"] is None and by_name[name]["gold_n"] == 0
    # agreement rate of the first annotator, by hand
    mine = workers == 0
    same = others = 0
    for i in np.unique(items[mine]):
        on_item = labels[items == i]
        label = labels[mine & (items == i)][0]
        same += int((on_item == label).sum()) - 1
        others += on_item.size - 1
    assert by_name[names[0]]["agreement_rate"] == pytest.approx(same / others)
    assert snap.policy in {"all", "disagreements", "confidence"}


@pytest.mark.django_db
def test_aggregation_with_no_annotations_writes_an_empty_snapshot(project):
    snap = project_aggregate(project=project)
    assert snap.project_kappa is None and snap.fleiss_kappa is None and snap.annotators == []
    assert snap.policy == Policy.DISAGREEMENTS


@pytest.mark.django_db
def test_gold_and_review_labels_are_never_overridden_and_grade_the_annotators(project, annotators):
    good, other_good, poor = annotators[:3]
    trusting(project)
    items, truth = plant(project, [good, other_good, poor], [0.97, 0.95, 0.0], 60)
    other = label_of(project, "other")
    # an item every annotator called "refund" that an expert decided is "other"
    gold_item = make_items(project, 1, prefix="gold")[0]
    Annotation.objects.bulk_create(
        [Annotation(project=project, item=gold_item, user=u, label=label_of(project, "refund")) for u in annotators[:3]]
    )
    Item.objects.filter(pk=gold_item.pk).update(
        status=ItemStatus.FINALIZED, final_label=other, final_confidence=1.0, final_source=LabelSource.REVIEW
    )
    for item, label in zip(items[:20], truth[:20], strict=True):
        Item.objects.filter(pk=item.pk).update(
            status=ItemStatus.FINALIZED, final_label=label, final_confidence=1.0, final_source=LabelSource.GOLD
        )
    snap = project_aggregate(project=project)
    gold_item.refresh_from_db()
    assert gold_item.final_label == other and gold_item.final_source == LabelSource.REVIEW
    assert gold_item.final_confidence == 1.0
    for item, label in zip(items[:20], truth[:20], strict=True):
        item.refresh_from_db()
        assert item.final_label == label and item.final_source == LabelSource.GOLD
    assert snap.n_gold == 21
    by_name = {a["username"]: a for a in snap.annotators}
    assert by_name[good.username]["gold_n"] == 21
    assert by_name[good.username]["gold_accuracy"] > 0.8 > by_name[poor.username]["gold_accuracy"]


@pytest.mark.django_db
def test_aggregation_relabels_consensus_items_and_reviews_the_ones_that_no_longer_pass(project, annotators):
    good, other_good, poor = annotators[:3]
    trusting(project)
    plant(project, [good, other_good, poor], [0.97, 0.95, 0.0], 60)
    # an item labelled by the poor annotator and a good one, finalised with the poor one's label
    refund, card, other = (label_of(project, name) for name in LABELS)
    wrong = make_items(project, 1, prefix="wrong")[0]
    Annotation.objects.bulk_create(
        [
            Annotation(project=project, item=wrong, user=poor, label=refund),
            Annotation(project=project, item=wrong, user=good, label=card),
        ]
    )
    Item.objects.filter(pk=wrong.pk).update(
        status=ItemStatus.FINALIZED, final_label=refund, final_confidence=0.5, final_source=LabelSource.CONSENSUS
    )
    # only the poor annotator's label: Dawid-Skene is unsure -> review
    doubtful = make_items(project, 1, prefix="doubt")[0]
    Annotation.objects.bulk_create([Annotation(project=project, item=doubtful, user=poor, label=other)])
    Item.objects.filter(pk=doubtful.pk).update(
        status=ItemStatus.FINALIZED, final_label=other, final_confidence=1.0, final_source=LabelSource.CONSENSUS
    )
    snap = project_aggregate(project=project)
    wrong.refresh_from_db()
    assert wrong.status == ItemStatus.FINALIZED and wrong.final_label == card
    assert wrong.final_confidence >= project.min_consensus_confidence
    doubtful.refresh_from_db()
    assert doubtful.status == ItemStatus.IN_REVIEW and doubtful.final_label is None
    task = ReviewTask.objects.get(item=doubtful)
    assert task.reason == ReviewReason.LOW_CONFIDENCE and task.status == ReviewStatus.OPEN
    assert snap.changes["relabelled"] >= 1 and snap.changes["to_review"] >= 1
    # a second run changes nothing more
    again = project_aggregate(project=project)
    assert again.changes["relabelled"] == 0 and again.changes["to_review"] == 0
    assert ReviewTask.objects.filter(item=doubtful).count() == 1


@pytest.mark.django_db
def test_aggregation_replaces_extra_label_entries_against_the_current_queue(project, annotators, scored):
    a, b = annotators[:2]
    items = make_items(project, 5)
    enqueue(project, items)
    first = submit(project, a, "refund")
    submit(project, b, "other")
    entry = QueueEntry.objects.get(item_id=first)
    assert entry.reason == QueueReason.EXTRA_LABEL
    # a scoring run rewrites the untouched entries on another scale (cold-start ranks)
    from annotation.services.queue import QueueCandidate, queue_replace

    queue_replace(
        project=project,
        candidates=[QueueCandidate(item_id=item.pk, priority=-100.0 - i) for i, item in enumerate(items[1:])],
        strategy="test",
    )
    assert QueueEntry.objects.get(item_id=first).priority == entry.priority  # kept, now off scale
    snap = project_aggregate(project=project)
    moved = QueueEntry.objects.get(item_id=first)
    assert moved.priority > -100.0  # back at the head of the new batch
    assert snap.changes["reprioritised"] == 1
    assert_queue_consistent(project)


@pytest.mark.django_db
def test_aggregation_handles_a_large_project(project, make_user):
    """Tens of thousands of annotations in a few bulk statements (no timing assertion)."""
    users = [make_user(f"bulk{i}") for i in range(8)]
    rng = np.random.default_rng(3)
    n_items = 4000
    items = make_items(project, n_items, prefix="big")
    labels = list(LabelClass.objects.filter(project=project).order_by("order", "id"))
    rows = []
    for item in items:
        for u in rng.choice(8, size=3, replace=False):
            rows.append(Annotation(project=project, item=item, user=users[u], label=labels[rng.integers(0, 3)]))
    Annotation.objects.bulk_create(rows, batch_size=2000)
    Item.objects.filter(project=project).update(
        status=ItemStatus.FINALIZED, final_label=labels[0], final_confidence=1.0, final_source=LabelSource.CONSENSUS
    )
    snap = project_aggregate(project=project)
    assert snap.n_annotations == 3 * n_items and len(snap.annotators) == 8
    # random labels: kappa ~ 0 -> everything multi-labelled goes to review
    assert snap.policy == Policy.ALL
    assert ReviewTask.objects.filter(project=project, status=ReviewStatus.OPEN).count() == n_items
    assert not Item.objects.filter(project=project, status=ItemStatus.FINALIZED).exists()


@pytest.mark.django_db
def test_one_label_per_item_keeps_each_annotators_label(make_project, make_user, scored):
    """With one label per item annotators share no items: Dawid-Skene has nothing to learn their
    confusions from, and its EM used to drift every item to the majority class. Votes decide instead."""
    names = [f"intent_{c}" for c in range(30)]
    project = make_project("Single", labels=names, labels_per_item=1, max_labels_per_item=1)
    scored.project = project
    scored.save()
    users = []
    for i in range(3):
        users.append(make_user(f"solo{i}"))
        services.membership_set(project=project, username=f"solo{i}", role=Role.ANNOTATOR)
    rng = np.random.default_rng(1)
    items = make_items(project, 90)
    enqueue(project, items)
    given = {}
    for n in range(90):
        user = users[n % 3]
        assignment = take(project, user)
        name = names[int(rng.integers(0, len(names)))] if n % 2 else names[0]
        services.annotation_submit(assignment_id=assignment.pk, user=user, label=name)
        given[assignment.item_id] = name

    snapshot = project_aggregate(project=project)

    assert snapshot.method == "dawid_skene" and snapshot.n_overlap_items == 0  # no switch to majority vote
    final = dict(Item.objects.filter(project=project).values_list("pk", "final_label__name"))
    assert final == given
    # the submit path after this aggregation keeps the answer too
    more = make_items(project, 1, prefix="late")
    enqueue(project, more)
    assignment = take(project, users[0])
    services.annotation_submit(assignment_id=assignment.pk, user=users[0], label=names[7])
    assert Item.objects.get(pk=more[0].pk).final_label.name == names[7]
