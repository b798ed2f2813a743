"""Labels a team already has (gold, honeypots) and annotator quality control (issue 13, points 3 and 4).

Through the real API stack: ingest of ``label`` / ``honeypot`` in JSON, JSON Lines and CSV; gold
items final and never queued; honeypots served like any other item and never revealed; onboarding;
pausing under the minimum honeypot accuracy; reinstatement (API and dashboard) and its permissions;
the aggregation's ``paused_answers`` choice; the annotator table's Wilson interval.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.urls import reverse

from annotation import quality, services
from annotation.models import (
    Annotation,
    Assignment,
    AssignmentStatus,
    IngestBatch,
    Item,
    ItemStatus,
    LabelClass,
    LabelSource,
    Membership,
    QueueEntry,
    QueueReason,
    ReviewReason,
    ReviewStatus,
    ReviewTask,
    Role,
)
from annotation.services import aggregation
from tests.invariants import assert_queue_consistent, enqueue, make_items

pytestmark = pytest.mark.django_db

JSON, JSONL, CSV = "application/json", "application/x-ndjson", "text/csv"


@pytest.fixture(autouse=True)
def no_refill(settings, recording_supply):
    settings.QUORUM_REFILL_THRESHOLD = 0
    settings.QUORUM_LEASE_SWEEP_SECONDS = 0


def push(api, project, body, content_type=JSON, query=""):
    if isinstance(body, list):
        if content_type == JSON:
            body = json.dumps(body)
        elif content_type == JSONL:
            body = "\n".join(json.dumps(record) for record in body)
    url = f"/api/v1/projects/{project.pk}/items" + (f"?{query}" if query else "")
    return api.post(url, data=body, content_type=content_type)


def label_id(project, name):
    return LabelClass.objects.get(project=project, name=name).pk


def get_next(api, project, **body):
    response = api.post(f"/api/v1/projects/{project.pk}/next", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def submit(api, assignment_id, label):
    return api.post(f"/api/v1/assignments/{assignment_id}/annotation", {"label": label}, format="json")


def configure(project, **settings):
    for name, value in settings.items():
        setattr(project, name, value)
    project.save()
    return project


def push_honeypots(admin_api, project, n, *, label="refund", prefix="hp"):
    records = [
        {"external_id": f"{prefix}-{i}", "text": f"held-out text {i}", "label": label, "honeypot": True}
        for i in range(n)
    ]
    response = push(admin_api, project, records)
    assert response.status_code == 201, response.content
    return list(Item.objects.filter(project=project, honeypot=True).order_by("id"))


# --- ingest: label and honeypot in every format ------------------------------------------------


GOLD_RECORDS = [
    {"external_id": "plain", "text": "no label"},
    {"external_id": "gold", "text": "my card is lost", "label": "card_lost"},
    {"external_id": "pot", "text": "give my money back", "label": "refund", "honeypot": True},
    {"external_id": "not-pot", "text": "something else", "label": "other", "honeypot": False},
]
GOLD_CSV = (
    "external_id,text,label,honeypot\n"
    "plain,no label,,\n"
    "gold,my card is lost,card_lost,\n"
    "pot,give my money back,refund,Yes\n"
    "not-pot,something else,other,0\n"
)


@pytest.mark.parametrize("content_type", [JSON, JSONL, CSV])
def test_labels_and_honeypots_are_ingested_final_and_gold(admin_api, project, content_type):
    body = GOLD_CSV if content_type == CSV else GOLD_RECORDS
    response = push(admin_api, project, body, content_type)
    assert response.status_code == 201, response.content
    assert response.json()["created"] == 4 and response.json()["labels_set"] == 3
    items = {item.external_id: item for item in Item.objects.filter(project=project)}
    assert items["plain"].status == ItemStatus.UNLABELED and items["plain"].final_label_id is None
    assert not items["plain"].honeypot and items["plain"].final_source == ""
    for external_id, name, honeypot in [
        ("gold", "card_lost", False),
        ("pot", "refund", True),
        ("not-pot", "other", False),
    ]:
        item = items[external_id]
        assert item.status == ItemStatus.FINALIZED
        assert item.final_label_id == label_id(project, name)
        assert item.final_source == LabelSource.GOLD and item.final_confidence == 1.0
        assert item.finalized_at is not None and item.honeypot is honeypot
    # a CSV's label and honeypot columns are fields, not metadata
    assert items["gold"].metadata == {}


@pytest.mark.parametrize(
    ("content_type", "body", "field", "reason"),
    [
        (JSON, [{"external_id": "a", "text": "t", "label": "nope"}], "label", "unknown label 'nope'"),
        (JSON, [{"external_id": "a", "text": "t", "label": 3}], "label", "must be a label name"),
        (JSON, [{"external_id": "a", "text": "t", "honeypot": True}], "honeypot", "needs a label"),
        (JSON, [{"external_id": "a", "text": "t", "label": "refund", "honeypot": "yes"}], "honeypot", "true or false"),
        (JSONL, [{"external_id": "a", "text": "t", "label": "Refund"}], "label", "unknown label 'Refund'"),
        (CSV, "external_id,text,label\nok,fine,refund\na,t,nope\n", "label", "unknown label 'nope'"),
        (CSV, "external_id,text,label,honeypot\nok,fine,refund,no\na,t,refund,maybe\n", "honeypot", "one of true"),
        (CSV, "external_id,text,label,honeypot\nok,fine,refund,1\na,t,,true\n", "honeypot", "needs a label"),
    ],
)
def test_bad_labels_are_a_per_record_400_and_nothing_is_written(admin_api, project, content_type, body, field, reason):
    if content_type != CSV:
        body = [{"external_id": "ok", "text": "fine", "label": "refund", "honeypot": True}, *body]
    response = push(admin_api, project, body, content_type)
    assert response.status_code == 400, response.content
    rejected = response.json()["rejected"]
    assert len(rejected) == 1 and rejected[0]["external_id"] == "a"
    assert reason in rejected[0]["errors"][field]
    if field == "label" and "unknown" in reason:
        assert "'refund', 'card_lost', 'other'" in rejected[0]["errors"]["label"]  # the valid names
    assert not Item.objects.filter(project=project).exists()
    assert not IngestBatch.objects.filter(project=project).exists()


def test_labels_of_another_project_are_unknown(admin_api, project, make_project):
    make_project("Other", labels=("elsewhere",))
    response = push(admin_api, project, [{"external_id": "a", "text": "t", "label": "elsewhere"}])
    assert response.status_code == 400
    assert "unknown label 'elsewhere'" in response.json()["rejected"][0]["errors"]["label"]


def test_skip_mode_stores_the_valid_records_and_lists_the_unknown_label(admin_api, project):
    body = [{"external_id": "a", "text": "t", "label": "nope"}, {"external_id": "b", "text": "u", "label": "other"}]
    response = push(admin_api, project, body, query="on_error=skip")
    assert response.status_code == 201
    assert response.json()["rejected"][0]["errors"]["label"].startswith("unknown label 'nope'")
    assert list(Item.objects.filter(project=project).values_list("external_id", "final_source")) == [("b", "gold")]


def test_re_pushing_changes_the_label_idempotently(admin_api, project):
    record = {"external_id": "x", "text": "same text", "label": "refund"}
    assert push(admin_api, project, [record]).status_code == 201
    again = push(admin_api, project, [record]).json()
    assert (again["created"], again["updated"], again["unchanged"], again["labels_set"]) == (0, 0, 1, 0)

    changed = push(admin_api, project, [{**record, "label": "other"}]).json()
    assert (changed["updated"], changed["unchanged"], changed["labels_set"]) == (1, 0, 1)
    item = Item.objects.get(project=project, external_id="x")
    assert item.final_label_id == label_id(project, "other") and not item.honeypot

    made_honeypot = push(admin_api, project, [{**record, "label": "other", "honeypot": True}]).json()
    assert made_honeypot["labels_set"] == 1
    assert Item.objects.get(pk=item.pk).honeypot

    # no label: the item keeps its gold label and its honeypot flag
    kept = push(admin_api, project, [{"external_id": "x", "text": "same text"}]).json()
    assert (kept["unchanged"], kept["labels_set"]) == (1, 0)
    item.refresh_from_db()
    assert item.final_label_id == label_id(project, "other") and item.honeypot
    assert item.final_source == LabelSource.GOLD

    back = push(admin_api, project, [{**record, "label": "other", "honeypot": False}]).json()
    assert back["labels_set"] == 1 and not Item.objects.get(pk=item.pk).honeypot
    assert IngestBatch.objects.filter(project=project).count() == 6


def test_a_gold_label_takes_an_item_out_of_the_queue(admin_api, api_for, member, project):
    """An item already queued, leased and in review elsewhere: the pushed gold label makes it
    final, drops its queue entry, ends the live lease and resolves its open review task."""
    items = make_items(project, 3)
    enqueue(project, items)
    annie = member("annie")
    lease = get_next(api_for(annie), project)["assignment"]
    leased = Item.objects.get(pk=lease["item"]["id"])
    other = next(item for item in items if item.pk != leased.pk)
    ReviewTask.objects.create(project=project, item=other, reason=ReviewReason.values[0])
    body = [
        {"external_id": leased.external_id, "text": leased.text, "label": "card_lost"},
        {"external_id": other.external_id, "text": other.text, "label": "other"},
    ]
    response = push(admin_api, project, body)
    assert response.status_code == 200 and response.json()["labels_set"] == 2
    for item, name in [(leased, "card_lost"), (other, "other")]:
        item.refresh_from_db()
        assert item.status == ItemStatus.FINALIZED and item.final_source == LabelSource.GOLD
        assert item.final_label_id == label_id(project, name)
        assert not QueueEntry.objects.filter(item=item).exists()
    assert Assignment.objects.get(pk=lease["id"]).status == AssignmentStatus.EXPIRED
    task = ReviewTask.objects.get(item=other)
    assert task.status == ReviewStatus.RESOLVED and task.decision_id == label_id(project, "other")
    assert_queue_consistent(project)
    # a late submission on the ended lease is refused
    late = submit(api_for(annie), lease["id"], "refund")
    assert late.status_code == 409


def test_gold_items_are_never_queued_and_count_as_known_truth(admin_api, api_for, member, project):
    push(admin_api, project, [{"external_id": f"g-{i}", "text": f"g {i}", "label": "refund"} for i in range(3)])
    push(admin_api, project, [{"external_id": f"u-{i}", "text": f"u {i}"} for i in range(2)])
    api = api_for(member("annie"))
    served = []
    for _ in range(2):
        body = get_next(api, project)
        served.append(body["assignment"]["item"]["external_id"])
        assert submit(api, body["assignment"]["id"], "refund").status_code == 201
    assert sorted(served) == ["u-0", "u-1"]
    assert get_next(api, project)["code"] == "queue_empty"
    assert not QueueEntry.objects.filter(project=project, item__external_id__startswith="g-").exists()
    data = aggregation._load(project)
    gold_items = set(Item.objects.filter(project=project, final_source=LabelSource.GOLD).values_list("id", flat=True))
    known = {int(item_id) for item_id, g in zip(data.item_ids, data.gold, strict=True) if g >= 0}
    assert gold_items <= known


# --- honeypots: served like any other item, never revealed --------------------------------------


def test_honeypots_are_served_at_the_rate_and_never_revealed(admin_api, api_for, member, project):
    configure(project, honeypot_rate=1.0)
    honeypots = push_honeypots(admin_api, project, 2)
    enqueue(project, make_items(project, 2))
    api = api_for(member("annie"))
    first = get_next(api, project, suggest=True)
    item_id = first["assignment"]["item"]["id"]
    assert item_id in {h.pk for h in honeypots}
    # the same shape and kinds of values as an ordinary queued item
    assert set(first) == {"assignment", "suggestion", "progress", "code"}
    assert set(first["assignment"]) == {"id", "project", "item", "status", "leased_at", "expires_at", "reason"}
    assert set(first["assignment"]["item"]) == {"id", "external_id", "text", "metadata"}
    assert first["assignment"]["reason"] in QueueReason.values and first["code"] is None
    assert "honeypot" not in json.dumps(first).lower() and "gold" not in json.dumps(first).lower()
    # the prefetched one, too; then the rate is exhausted and queue items follow
    second = get_next(api, project, held=[first["assignment"]["id"]])
    assert second["assignment"]["item"]["id"] in {h.pk for h in honeypots} - {item_id}
    # reloading the page hands back the same live lease, still with a reason
    again = get_next(api, project)
    assert again["assignment"]["id"] == first["assignment"]["id"] and again["assignment"]["reason"] is not None

    created = submit(api, first["assignment"]["id"], "card_lost")
    assert created.status_code == 201
    annotation = created.json()["annotation"]
    # an answer on a honeypot can be changed and taken back like any open item
    change = api.patch(f"/api/v1/annotations/{annotation['id']}", {"label": "other"}, format="json")
    assert change.status_code == 200, change.content
    undo = api.post(f"/api/v1/annotations/{annotation['id']}/undo")
    assert undo.status_code == 200, undo.content
    assert undo.json()["assignment"]["item"]["id"] == item_id
    assert undo.json()["assignment"]["reason"] in QueueReason.values
    assert submit(api, first["assignment"]["id"], "card_lost").status_code == 201
    # the honeypot's own label is untouched by its answers
    honeypot = Item.objects.get(pk=item_id)
    assert honeypot.final_label_id == label_id(project, "refund") and honeypot.status == ItemStatus.FINALIZED
    assert not QueueEntry.objects.filter(item=honeypot).exists()
    assert_queue_consistent(project)

    # annotators never see honeypot flags in the items they can list back
    listed = api.get(f"/api/v1/projects/{project.pk}/annotations").json()
    assert "honeypot" not in json.dumps(listed).lower()
    # a second annotator may hold the same honeypot at the same time: no slots
    bob = api_for(member("bob"))
    bob_lease = get_next(bob, project)["assignment"]
    assert bob_lease["item"]["id"] in {h.pk for h in honeypots}
    skipped = bob.post(f"/api/v1/assignments/{bob_lease['id']}/skip", {"reason": "unsure"}, format="json")
    assert skipped.status_code == 200 and skipped.json()["assignment"]["reason"] in QueueReason.values
    assert_queue_consistent(project)


def test_no_honeypot_is_served_with_the_defaults(admin_api, api_for, member, project):
    push_honeypots(admin_api, project, 3)
    enqueue(project, make_items(project, 2))
    api = api_for(member("annie"))
    for _ in range(2):
        body = get_next(api, project)
        assert not Item.objects.get(pk=body["assignment"]["item"]["id"]).honeypot
        submit(api, body["assignment"]["id"], "refund")
    assert get_next(api, project)["code"] == "queue_empty"


def test_onboarding_gives_a_new_annotator_honeypots_first(admin_api, api_for, member, project):
    configure(project, onboarding_honeypots=2)
    honeypots = {h.pk for h in push_honeypots(admin_api, project, 3)}
    enqueue(project, make_items(project, 3))
    api = api_for(member("newbie"))
    kinds = []
    for _ in range(4):
        body = get_next(api, project)
        kinds.append(body["assignment"]["item"]["id"] in honeypots)
        assert submit(api, body["assignment"]["id"], "refund").status_code == 201
    assert kinds == [True, True, False, False]


def test_onboarding_stops_when_the_honeypots_run_out(admin_api, api_for, member, project):
    configure(project, onboarding_honeypots=5)
    honeypots = {h.pk for h in push_honeypots(admin_api, project, 1)}
    enqueue(project, make_items(project, 2))
    api = api_for(member("newbie"))
    first = get_next(api, project)["assignment"]
    submit(api, first["id"], "refund")
    second = get_next(api, project)["assignment"]
    assert first["item"]["id"] in honeypots and second["item"]["id"] not in honeypots


def test_the_honeypot_share_follows_the_rate():
    """Rule 1 after onboarding: a keyed draw per served item, so the share of honeypots is the rate."""
    for rate in (0.05, 0.2, 0.5):
        due = [
            quality.honeypot_due(
                items_served=n, rate=rate, onboarding=0, chance=quality.draw("key", "honeypot", 1, user, n)
            )
            for user in range(20)
            for n in range(500)
        ]
        assert abs(sum(due) / len(due) - rate) < 0.02
    assert quality.draw("key", 1, 2) == quality.draw("key", 1, 2) != quality.draw("other key", 1, 2)
    assert quality.honeypot_due(items_served=0, rate=0.0, onboarding=1, chance=0.99)
    assert not quality.honeypot_due(items_served=1, rate=0.0, onboarding=1, chance=0.0)


# --- pausing -----------------------------------------------------------------------------------


@pytest.fixture
def strict_project(admin_api, project):
    configure(project, onboarding_honeypots=3, min_honeypot_accuracy=0.6, min_honeypots=2)
    push_honeypots(admin_api, project, 6)
    enqueue(project, make_items(project, 4))
    return project


def answer_wrong(api, project, n, *, hold_prefetch=False):
    """Answer ``n`` items wrong (the honeypots' label is refund); returns the last payload."""
    held = []
    for _ in range(n):
        body = get_next(api, project, held=held)
        if hold_prefetch:
            held = [body["assignment"]["id"]]
        assert submit(api, body["assignment"]["id"], "other").status_code == 201
        held = []
    return body


def test_falling_under_the_minimum_pauses_the_annotator(strict_project, api_for, member):
    project = strict_project
    annie = member("annie")
    api = api_for(annie)
    first = get_next(api, project)["assignment"]
    answer = submit(api, first["id"], "other")
    assert answer.status_code == 201 and answer.json()["paused"] is None  # 0 of 1: too few to judge
    assert not Membership.objects.get(project=project, user=annie).paused_at
    second = get_next(api, project)["assignment"]
    prefetched = get_next(api, project, held=[second["id"]])["assignment"]
    answer = submit(api, second["id"], "other")
    assert answer.status_code == 201  # 0 of 2: paused, and the answer that did it says so at once
    assert "0 of 2" in answer.json()["paused"]  # (the page drops the prefetched item then)
    membership = Membership.objects.get(project=project, user=annie)
    assert membership.paused_at is not None and "0 of 2" in membership.pause_reason
    # next says why; the prefetched lease ended and cannot be submitted
    body = get_next(api, project)
    assert body["assignment"] is None and body["code"] == "paused"
    assert "0 of 2" in body["message"] and "reinstate" in body["message"]
    assert Assignment.objects.get(pk=prefetched["id"]).status == AssignmentStatus.EXPIRED
    refused = submit(api, prefetched["id"], "refund")
    assert refused.status_code == 409 and refused.json()["code"] == "paused"
    assert "0 of 2" in refused.json()["detail"]
    assert_queue_consistent(project)


def test_accurate_annotators_are_not_paused(strict_project, api_for, member):
    project = strict_project
    api = api_for(member("ace"))
    for _ in range(5):
        body = get_next(api, project)
        item = Item.objects.get(pk=body["assignment"]["item"]["id"])
        assert submit(api, body["assignment"]["id"], "refund" if item.honeypot else "other").status_code == 201
    assert not Membership.objects.filter(project=project, paused_at__isnull=False).exists()
    assert services.honeypot_scores(project)[Membership.objects.get(user__username="ace").user_id] == (
        services.HoneypotScore(3, 3)
    )


def test_a_minimum_of_zero_never_pauses(admin_api, api_for, member, project):
    configure(project, onboarding_honeypots=3, min_honeypot_accuracy=0.0, min_honeypots=1)
    push_honeypots(admin_api, project, 3)
    api = api_for(member("annie"))
    answer_wrong(api, project, 3)
    assert get_next(api, project)["code"] == "queue_empty"


def test_quality_rule_and_pause_reason():
    assert not quality.should_pause(correct=0, answered=1, min_accuracy=0.8, min_answered=2)
    assert quality.should_pause(correct=1, answered=2, min_accuracy=0.8, min_answered=2)
    assert not quality.should_pause(correct=4, answered=5, min_accuracy=0.8, min_answered=2)
    assert not quality.should_pause(correct=0, answered=9, min_accuracy=0.0, min_answered=2)
    assert "3 of 5" in quality.pause_reason(correct=3, answered=5, min_accuracy=0.8)


@pytest.mark.parametrize(
    ("correct", "n", "low", "high"),
    # Wilson 95 % intervals (Brown, Cai & DasGupta 2001, table values recomputed with z = 1.96)
    [(0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (5, 10, 0.2366, 0.7634), (81, 263, 0.2553, 0.3662)],
)
def test_wilson_interval(correct, n, low, high):
    got = quality.wilson_interval(correct, n)
    assert got == pytest.approx((low, high), abs=1e-4)
    assert quality.wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        quality.wilson_interval(3, 2)


# --- reinstating -------------------------------------------------------------------------------


def reinstate_url(project, username):
    return f"/api/v1/projects/{project.pk}/members/{username}/reinstate"


def test_reinstate_through_the_api(strict_project, api_for, admin_api, member):
    project = strict_project
    annie = member("annie")
    api = api_for(annie)
    answer_wrong(api, project, 2)
    assert get_next(api, project)["code"] == "paused"
    listed = {m["username"]: m for m in admin_api.get(f"/api/v1/projects/{project.pk}/members").json()}
    assert listed["annie"]["paused"] is True and "0 of 2" in listed["annie"]["pause_reason"]

    response = admin_api.post(reinstate_url(project, "annie"))
    assert response.status_code == 200, response.content
    assert response.json()["paused"] is False and response.json()["reinstated_at"]
    assert admin_api.post(reinstate_url(project, "annie")).status_code == 200  # idempotent
    # the old wrong answers do not pause her again: only answers after the reinstatement count
    configure(project, honeypot_rate=1.0)
    body = get_next(api, project)
    assert Item.objects.get(pk=body["assignment"]["item"]["id"]).honeypot
    assert submit(api, body["assignment"]["id"], "refund").status_code == 201
    assert services.honeypot_scores(project)[annie.pk] == services.HoneypotScore(1, 1)
    assert get_next(api, project)["assignment"] is not None
    # but new wrong answers do: 1 of 2 since the reinstatement
    answer_wrong(api, project, 1)
    assert get_next(api, project)["code"] == "paused"
    assert "1 of 2" in Membership.objects.get(project=project, user=annie).pause_reason


@pytest.mark.parametrize(("role", "status"), [(Role.ANNOTATOR, 403), (Role.REVIEWER, 403), (None, 404)])
def test_only_admins_reinstate(strict_project, api_for, make_user, member, role, status):
    project = strict_project
    annie = member("annie")
    answer_wrong(api_for(annie), project, 2)
    caller = member("caller", role) if role else make_user("stranger")
    response = api_for(caller).post(reinstate_url(project, "annie"))
    assert response.status_code == status
    assert Membership.objects.get(project=project, user=annie).paused_at is not None
    assert api_for(None).post(reinstate_url(project, "annie")).status_code in (401, 403)


def test_reinstating_an_unknown_member_is_404(admin_api, make_user, project):
    make_user("outsider")
    response = admin_api.post(reinstate_url(project, "outsider"))
    assert response.status_code == 404 and "outsider" in json.dumps(response.json())
    assert admin_api.post("/api/v1/projects/999999/members/x/reinstate").status_code == 404


def test_the_dashboard_shows_the_pause_and_admins_reinstate_there(
    strict_project, api_for, client_for, member, admin_user
):
    project = strict_project
    annie = member("annie")
    answer_wrong(api_for(annie), project, 2)
    page = client_for(admin_user).get(reverse("dashboard", args=[project.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    # 0 of 2 honeypots: accuracy 0, Wilson 95 % interval [0, 0.66]
    assert "0.000 [0.00–0.66] (0/2)" in html
    assert "paused" in html and reverse("dashboard-reinstate", args=[project.pk, "annie"]) in html

    reviewer = member("rita", Role.REVIEWER)
    url = reverse("dashboard-reinstate", args=[project.pk, "annie"])
    assert client_for(reviewer).post(url).status_code == 403
    assert "Reinstate" not in client_for(reviewer).get(reverse("dashboard", args=[project.pk])).content.decode()
    assert client_for(member("other-ann")).post(url).status_code == 403
    assert client_for(admin_user).get(url).status_code == 405
    assert Membership.objects.get(project=project, user=annie).paused_at is not None

    response = client_for(admin_user).post(url)
    assert response.status_code == 302 and response["Location"].endswith(reverse("dashboard", args=[project.pk]))
    assert Membership.objects.get(project=project, user=annie).paused_at is None
    assert get_next(api_for(annie), project)["assignment"] is not None


# --- what the aggregation does with a paused annotator's answers ----------------------------------


@pytest.mark.parametrize(("choice", "kept"), [("weight", True), ("exclude", False)])
def test_paused_answers_are_weighted_or_excluded(strict_project, api_for, member, choice, kept):
    project = configure(strict_project, paused_answers=choice)
    annie = member("annie")
    answer_wrong(api_for(annie), project, 2)
    bob = member("bob")
    answer_wrong(api_for(bob), project, 1)
    data = aggregation._load(project)
    assert (annie.pk in set(data.user_ids.tolist())) is kept
    assert bob.pk in set(data.user_ids.tolist())
    assert Annotation.objects.filter(user=annie).count() == 2  # never deleted


# --- settings and export -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("honeypot_rate", 1.5),
        ("honeypot_rate", -0.1),
        ("min_honeypot_accuracy", 2),
        ("min_honeypots", 0),
        ("onboarding_honeypots", -1),
        ("paused_answers", "ignore"),
    ],
)
def test_quality_settings_are_validated(admin_api, project, field, value):
    response = admin_api.patch(f"/api/v1/projects/{project.pk}", {field: value}, format="json")
    assert response.status_code == 400 and field in response.json()


def test_quality_settings_round_trip(admin_api, project):
    settings = {
        "honeypot_rate": 0.1,
        "onboarding_honeypots": 5,
        "min_honeypot_accuracy": 0.7,
        "min_honeypots": 8,
        "paused_answers": "exclude",
    }
    response = admin_api.patch(f"/api/v1/projects/{project.pk}", settings, format="json")
    assert response.status_code == 200, response.content
    assert {key: response.json()[key] for key in settings} == settings


def test_the_export_flags_gold_and_honeypots(admin_api, project):
    push(admin_api, project, GOLD_RECORDS)
    lines = b"".join(admin_api.get(f"/api/v1/projects/{project.pk}/export").streaming_content).decode().splitlines()
    flags = {
        record["external_id"]: (record["gold"], record["honeypot"], record["source"])
        for record in map(json.loads, lines)
    }
    assert flags == {
        "plain": (False, False, None),
        "gold": (True, False, "gold"),
        "pot": (True, True, "gold"),
        "not-pot": (True, False, "gold"),
    }
    text = b"".join(admin_api.get(f"/api/v1/projects/{project.pk}/export?format=csv").streaming_content).decode()
    rows = {row["external_id"]: (row["gold"], row["honeypot"]) for row in csv.DictReader(io.StringIO(text))}
    assert rows == {
        "plain": ("false", "false"),
        "gold": ("true", "false"),
        "pot": ("true", "true"),
        "not-pot": ("true", "false"),
    }
