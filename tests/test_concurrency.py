"""Annotators racing for the queue, each thread on its own database connection.

Runs on whatever database the suite is configured for: PostgreSQL (row locks, SKIP LOCKED) and
SQLite (serialised writers) must both hand out every slot exactly once.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from acquisition.models import ScoringRun
from annotation import services
from annotation.models import Annotation, Assignment, AssignmentStatus, Item, ItemStatus, Membership, QueueEntry, Role
from tests.invariants import assert_queue_consistent, enqueue, make_items

pytestmark = pytest.mark.django_db(transaction=True)

N_ANNOTATORS = 16
N_ITEMS = 40


@pytest.fixture(autouse=True)
def no_refill(settings, recording_supply):
    settings.QUORUM_REFILL_THRESHOLD = 0
    settings.QUORUM_LEASE_SWEEP_SECONDS = 0


def make_annotators(project, n):
    users = get_user_model().objects.bulk_create([get_user_model()(username=f"racer{i}") for i in range(n)])
    users = list(get_user_model().objects.filter(username__startswith="racer").order_by("username"))
    Membership.objects.bulk_create([Membership(project=project, user=user, role=Role.ANNOTATOR) for user in users])
    return users


def run_threads(target, args_list):
    """Start one thread per args tuple at the same moment; re-raise the first failure."""
    barrier = threading.Barrier(len(args_list))
    errors = []

    def wrapper(*args):
        try:
            barrier.wait(timeout=30)
            target(*args)
        except BaseException as exc:  # noqa: BLE001 - reported in the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=wrapper, args=args) for args in args_list]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    if errors:
        raise errors[0]


def label_until_empty(project, user, created: Counter, seed: int, skip_share: float = 0.0):
    rng = random.Random(seed)
    while True:
        result = services.assignment_next(project=project, user=user)
        if result.assignment is None:
            assert result.code == "queue_empty", result.code
            # Empty for now; a slot held by someone else may still come back through a skip.
            if not Assignment.objects.filter(project=project, status=AssignmentStatus.LEASED).exists():
                return
            time.sleep(0.005)
            continue
        assignment = result.assignment
        if rng.random() < skip_share:
            services.assignment_skip(assignment_id=assignment.pk, user=user, reason="race")
            continue
        outcome = services.annotation_submit(assignment_id=assignment.pk, user=user, label="refund", time_spent_ms=5)
        assert outcome.created
        created[user.pk] += 1
        if rng.random() < 0.2:  # a network retry of the same submission
            again = services.annotation_submit(assignment_id=assignment.pk, user=user, label="refund", time_spent_ms=5)
            assert not again.created and again.annotation.pk == outcome.annotation.pk


def check_every_item_labelled_exactly(project, items, created: Counter):
    per_item = Counter(Annotation.objects.filter(project=project).values_list("item_id", flat=True))
    assert {item.pk: per_item[item.pk] for item in items} == {item.pk: project.labels_per_item for item in items}
    pairs = list(Annotation.objects.filter(project=project).values_list("item_id", "user_id"))
    assert len(pairs) == len(set(pairs)), "an annotator labelled an item twice"
    assignment_pairs = list(Assignment.objects.filter(project=project).values_list("item_id", "user_id"))
    assert len(assignment_pairs) == len(set(assignment_pairs)), "an item was handed to the same annotator twice"
    assert sum(created.values()) == len(pairs), "an annotation was lost or doubled"
    assert not Assignment.objects.filter(project=project, status=AssignmentStatus.LEASED).exists()
    assert set(Item.objects.filter(pk__in=[i.pk for i in items]).values_list("status", flat=True)) == {
        ItemStatus.FINALIZED
    }
    assert not QueueEntry.objects.filter(project=project).exists()
    assert_queue_consistent(project)


@pytest.mark.parametrize("skip_share", [0.0, 0.1])
def test_racing_annotators_exhaust_the_queue_exactly(project, skip_share):
    ScoringRun.objects.create(project=project, strategy="margin", status=ScoringRun.Status.SUCCEEDED)  # no fallback
    items = make_items(project, N_ITEMS)
    enqueue(project, items)
    users = make_annotators(project, N_ANNOTATORS)
    created = Counter()
    run_threads(label_until_empty, [(project, user, created, i, skip_share) for i, user in enumerate(users)])
    check_every_item_labelled_exactly(project, items, created)


def test_racing_annotators_with_the_fallback_filling_the_queue(project):
    project.batch_size = 7  # many small top-ups race with the pickers
    project.save()
    items = make_items(project, N_ITEMS)
    users = make_annotators(project, N_ANNOTATORS)
    created = Counter()
    run_threads(label_until_empty, [(project, user, created, i) for i, user in enumerate(users)])
    check_every_item_labelled_exactly(project, items, created)


def test_one_annotator_in_many_tabs_never_holds_more_than_the_limit(project):
    ScoringRun.objects.create(project=project, strategy="margin", status=ScoringRun.Status.SUCCEEDED)
    items = make_items(project, 10)
    enqueue(project, items)
    (user,) = make_annotators(project, 1)
    handed = []

    def tab(_):
        for _ in range(5):
            result = services.assignment_next(project=project, user=user, held=[])
            handed.append(result.assignment.pk)

    run_threads(tab, [(i,) for i in range(8)])
    assert len(set(handed)) == 1  # every tab sees the same live lease
    assert Assignment.objects.filter(user=user).count() == 1
    assert_queue_consistent(project)


def test_double_clicks_on_submit_record_one_annotation(project):
    ScoringRun.objects.create(project=project, strategy="margin", status=ScoringRun.Status.SUCCEEDED)
    items = make_items(project, 8)
    enqueue(project, items)
    users = make_annotators(project, 8)
    assignments = [services.assignment_next(project=project, user=user).assignment for user in users]
    outcomes = []

    def click(assignment, user):
        outcomes.append(
            services.annotation_submit(assignment_id=assignment.pk, user=user, label="other", time_spent_ms=1)
        )

    run_threads(click, [(a, u) for a, u in zip(assignments, users, strict=True) for _ in range(3)])
    assert Annotation.objects.count() == len(assignments)
    assert sum(outcome.created for outcome in outcomes) == len(assignments)
    assert len({outcome.annotation.pk for outcome in outcomes}) == len(assignments)
    assert_queue_consistent(project)
