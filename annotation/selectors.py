"""Reads of the annotation app that carry a rule: who may see which project."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from quorum.chunks import iter_chunks
from quorum.errors import NotFound, PermissionDenied, ServiceError

from . import ports
from .models import (
    ANNOTATOR_KEY,
    AgreementSnapshot,
    Annotation,
    AnnotatorQuality,
    Assignment,
    AssignmentStatus,
    ItemStatus,
    LabelClass,
    Membership,
    Project,
    QueueEntry,
    ReviewStatus,
    ReviewTask,
    Role,
    deleted_user_name,
)
from .routing import ReviewReason, review_policy, review_reason_text
from .task_types import task_of

ROLE_RANK = {Role.ANNOTATOR: 1, Role.REVIEWER: 2, Role.ADMIN: 3}


def projects_for_user(user) -> QuerySet[Project]:
    """Projects the user is a member of (superusers see all)."""
    if not user.is_authenticated:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user)


def role_in_project(user, project: Project) -> str | None:
    if not user.is_authenticated:
        return None
    if user.is_superuser:
        return Role.ADMIN
    return Membership.objects.filter(user=user, project=project).values_list("role", flat=True).first()


def roles_by_project(user, projects) -> dict[int, str]:
    """The user's role in each of ``projects``, in one query."""
    if user.is_superuser:
        return {project.pk: Role.ADMIN for project in projects}
    return dict(Membership.objects.filter(user=user, project__in=projects).values_list("project_id", "role"))


def has_role(role: str | None, minimum: str) -> bool:
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[minimum]


def project_for_user(user, project_id: int) -> tuple[Project, str]:
    """The project and the user's role in it. Unknown projects and projects the user is not a
    member of look the same (404), so ids reveal nothing."""
    project = Project.objects.filter(pk=project_id).first()
    role = role_in_project(user, project) if project is not None else None
    if project is None or role is None:
        raise NotFound(f"project {project_id} does not exist or you are not a member of it", code="not_found")
    return project, role


def item_counts(project: Project) -> dict[str, int]:
    counts = dict(project.items.order_by().values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    by_status = {status: counts.get(status, 0) for status in ItemStatus.values}
    return {"total": sum(by_status.values()), **by_status}


# --- the annotator's queue -------------------------------------------------------------------

REMAINING_CAP = 100  # "remaining" counts up to this many entries (a bounded, indexed read)


def _start_of_today():
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


def open_slots(project: Project, *, limit: int) -> int:
    """Open slots of the project's queue, counted exactly up to ``limit`` (then ``>= limit``).

    Sums ``labels_needed - labels_taken`` over at most ``limit`` open entries (each has at least
    one slot), so the read stays small however long the queue is.
    """
    open_entries = (
        QueueEntry.objects.filter(project=project, labels_taken__lt=F("labels_needed"))
        .order_by("-priority", "id")
        .values_list("labels_needed", "labels_taken")[:limit]
    )
    return sum(needed - taken for needed, taken in open_entries)


def _queue_snapshot_sql() -> str:
    annotation, entry = Annotation._meta.db_table, QueueEntry._meta.db_table
    assignment = Assignment._meta.db_table
    return f"""
    SELECT
      (SELECT COUNT(*) FROM {annotation} WHERE project_id = %(p)s AND user_id = %(u)s),
      (SELECT COUNT(*) FROM {annotation} WHERE project_id = %(p)s AND user_id = %(u)s AND created_at >= %(today)s),
      (SELECT COUNT(*) FROM (
         SELECT 1 FROM {entry} e WHERE e.project_id = %(p)s AND e.labels_taken < e.labels_needed
         AND NOT EXISTS (SELECT 1 FROM {assignment} a WHERE a.item_id = e.item_id AND a.user_id = %(u)s
                     AND a.status <> %(expired)s AND a.superseded_at IS NULL)
         LIMIT %(cap)s) mine),
      (SELECT COALESCE(SUM(o.labels_needed - o.labels_taken), 0) FROM (
         SELECT e.labels_needed, e.labels_taken FROM {entry} e
         WHERE e.project_id = %(p)s AND e.labels_taken < e.labels_needed
         ORDER BY e.priority DESC, e.id LIMIT %(slots)s) o)
    """


def queue_snapshot(project: Project, user, *, slots_limit: int = 0) -> dict:
    """The annotator's progress line plus the project's open slots (counted up to
    ``slots_limit``, for the refill decision), in ONE query: the next-item path reads it on every
    request. (Whether a refill is on its way is the queue supply's to say: ``leases``.)

    ``remaining``: queue entries with an open slot that this user may still take (never handed to
    them, or only as a lease that expired), counted up to ``REMAINING_CAP`` (``remaining_capped``
    says the true number may be higher).
    """
    params = {
        "p": project.pk,
        "u": user.pk,
        "today": _start_of_today(),
        "cap": REMAINING_CAP,
        "slots": max(int(slots_limit), 0),
        "expired": AssignmentStatus.EXPIRED,
    }
    with connection.cursor() as cursor:
        cursor.execute(_queue_snapshot_sql(), params)
        total, today, remaining, slots = cursor.fetchone()
    return {
        "done_today": int(today),
        "done_total": int(total),
        "remaining": int(remaining),
        "remaining_capped": int(remaining) >= REMAINING_CAP,
        "open_slots": int(slots),
    }


def annotator_progress(project: Project, user) -> dict:
    """The progress line of the labelling page (see ``queue_snapshot``)."""
    snapshot = queue_snapshot(project, user)
    snapshot.pop("open_slots")
    snapshot["refill_running"] = ports.queue_supply().running(project)
    return snapshot


def assignment_for_user(user, assignment_id: int) -> Assignment:
    """One of the user's own assignments; others' ids and unknown ids look the same (404)."""
    assignment = Assignment.objects.filter(pk=assignment_id, user=user).select_related("project", "item").first()
    if assignment is None:
        raise NotFound(f"assignment {assignment_id} does not exist or is not yours", code="not_found")
    return assignment


def annotation_for_user(user, annotation_id: int) -> Annotation:
    """One of the user's own annotations; others' ids and unknown ids look the same (404)."""
    annotation = (
        Annotation.all_revisions.filter(pk=annotation_id, user=user).select_related("project", "item", "label").first()
    )
    if annotation is None:
        raise NotFound(f"annotation {annotation_id} does not exist or is not yours", code="not_found")
    return annotation


def queue_entry_of_item(item_id: int) -> QueueEntry | None:
    return QueueEntry.objects.filter(item_id=item_id).select_related("suggested_label").first()


def annotations_visible(project: Project, user, role: str, *, username: str | None = None) -> QuerySet[Annotation]:
    """Annotations of the project the user may list: annotators their own, reviewers and admins
    everyone's (optionally one annotator's, by username). Newest first."""
    queryset = Annotation.objects.filter(project=project)
    if not has_role(role, Role.REVIEWER):
        if username is not None and username != user.get_username():
            message = "annotators see only their own annotations"
            raise PermissionDenied({"detail": message, "errors": {"user": message}}, code="permission_denied")
        queryset = queryset.filter(user=user)
    elif username is not None:
        queryset = queryset.filter(user__username=username)
    return queryset.select_related("label", "user").order_by("-created_at", "-id")


def project_with_role(user, project_id: int) -> tuple[Project, str]:
    """``project_for_user`` in one query (the project row with the caller's role beside it)."""
    if not user.is_authenticated:
        raise NotFound(f"project {project_id} does not exist or you are not a member of it", code="not_found")
    project = (
        Project.objects.filter(pk=project_id)
        .annotate(member_role=Subquery(Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]))
        .first()
    )
    role = Role.ADMIN if project is not None and user.is_superuser else getattr(project, "member_role", None)
    if project is None or role is None:
        raise NotFound(f"project {project_id} does not exist or you are not a member of it", code="not_found")
    return project, role


def assignment_for_member(user, assignment_id: int) -> tuple[Assignment, str | None]:
    """One of the user's own assignments (with project and item) and the user's role in its
    project, in one query. Others' ids and unknown ids look the same (404)."""
    assignment = (
        # every revision: a lease that showed an older text gets the service's 409, not a 404
        Assignment.all_revisions.filter(pk=assignment_id, user=user)
        .select_related("project", "item")
        .annotate(
            member_role=Subquery(
                Membership.objects.filter(project=OuterRef("project_id"), user=user).values("role")[:1]
            )
        )
        .first()
    )
    if assignment is None:
        raise NotFound(f"assignment {assignment_id} does not exist or is not yours", code="not_found")
    return assignment, (Role.ADMIN if user.is_superuser else assignment.member_role)


# --- who can still label or review an item (no item waits for ever) ---------------------------


def eligible_annotators(project: Project) -> list[int]:
    """User ids of the members who may still be handed items of ``project``: active accounts, not
    paused by quality control (``Membership.paused_at``), with the annotator role, or with a higher
    role (reviewer, admin) when they have been handed an item of the project before. Reviewers and
    admins may label, but the queue does not wait for someone who never does: an item that only
    they could still label counts as having nobody left (``routing``: ``no_annotator``).

    The one place that says who counts; routing (``services.consensus``) and re-routing
    (``services.aggregation``, ``services.projects``) ask it."""
    labelled = Assignment.objects.filter(project=project, user_id=OuterRef("user_id"))
    return list(
        Membership.objects.filter(project=project, user__is_active=True, paused_at__isnull=True)
        .filter(Q(role=Role.ANNOTATOR) | Exists(labelled))
        .order_by("user_id")
        .values_list("user_id", flat=True)
    )


def reviewer_ids(project: Project) -> list[int]:
    """User ids of the active members who may review items of ``project`` (reviewer or admin)."""
    return list(
        Membership.objects.filter(
            project=project, user__is_active=True, role__in=[Role.REVIEWER, Role.ADMIN]
        ).values_list("user_id", flat=True)
    )


@dataclass(frozen=True, slots=True)
class LabellingState:
    """Who is left for one queued item: ``can_extend``: an eligible annotator who has not been
    handed it (never, or only as a lease that expired); ``leased``: someone holds a live lease on
    it (its label is on its way); ``has_reviewer``: a reviewer or admin who has not labelled it."""

    can_extend: bool
    leased: bool
    has_reviewer: bool


def labelling_states(project: Project, item_ids) -> dict[int, LabellingState]:
    """``LabellingState`` of each of ``item_ids`` (queued items of ``project``): three small reads
    (eligible annotators, reviewers, the items' assignments and annotations) per 2,000 items."""
    item_ids = [int(item_id) for item_id in item_ids]
    eligible = set(eligible_annotators(project))
    reviewers = set(reviewer_ids(project))
    handed: dict[int, set[int]] = {item_id: set() for item_id in item_ids}
    leased: set[int] = set()
    labelled: dict[int, set[int]] = {item_id: set() for item_id in item_ids}
    for chunk in iter_chunks(item_ids, 2000):
        for item_id, user_id, status in (
            Assignment.objects.filter(item_id__in=chunk)
            .exclude(status=AssignmentStatus.EXPIRED)
            .values_list("item_id", "user_id", "status")
        ):
            handed[item_id].add(user_id)
            if status == AssignmentStatus.LEASED:
                leased.add(item_id)
        for item_id, user_id in Annotation.objects.filter(item_id__in=chunk).values_list("item_id", ANNOTATOR_KEY):
            labelled[item_id].add(user_id)
    return {
        item_id: LabellingState(
            can_extend=bool(eligible - handed[item_id]),
            leased=item_id in leased,
            has_reviewer=bool(reviewers - labelled[item_id]),
        )
        for item_id in item_ids
    }


# --- expert review and agreement -------------------------------------------------------------


def review_for_user(user, review_id: int, *, minimum: str = Role.REVIEWER):
    """A review task and the user's role in its project. Unknown ids and projects the user is not a
    member of look the same (404); members below ``minimum`` get ``PermissionDenied`` (403)."""
    task = ReviewTask.objects.select_related("project").filter(pk=review_id).first()
    role = role_in_project(user, task.project) if task is not None else None
    if task is None or role is None:
        raise NotFound(f"review {review_id} does not exist or you are not a member of its project", code="not_found")
    if not has_role(role, minimum):
        raise PermissionDenied(f"reviews need the {minimum} role in project {task.project_id}; you are {role}")
    return task


def reviews_of_project(project: Project, *, status: str | None = None) -> QuerySet:
    queryset = ReviewTask.objects.filter(project=project)
    if status is not None:
        if status not in ReviewStatus.values:
            message = f"status must be one of {', '.join(ReviewStatus.values)}, got {status!r}"
            raise ServiceError({"detail": message, "errors": {"status": message}}, code="invalid")
        queryset = queryset.filter(status=status)
    return queryset.order_by("-created_at", "-id")


def _percent(p: float, other: float | None = None) -> str:
    """``p`` as a percentage, with as many decimals (up to three) as it takes not to print the same
    figure as ``other`` when the two differ."""
    for digits in range(4):
        text = f"{100.0 * p:.{digits}f}"
        if other is None or p == other or text != f"{100.0 * other:.{digits}f}":
            break
    return f"{text} %"


def tags_reason_text(
    reason: str,
    *,
    disputed: list[tuple[str, int]],
    n_labels: int,
    confidence: float | None,
    threshold: float,
    review_all_below_kappa: float | None = None,
) -> str:
    """The words of a multi-label task's review chip, from the stored reason and the item's actual
    numbers: ``disputed``, the tags in dispute with the number of annotators who chose each (of
    ``n_labels`` annotations); ``confidence``, the least confident tag's max(p, 1 - p)."""
    reason = ReviewReason(reason)
    if reason is ReviewReason.LABEL_ERROR:
        return reason.label
    shown = [f"{name}: {n} of {n_labels} chose it" for name, n in disputed[:5]]
    if len(disputed) > 5:
        shown.append(f"{len(disputed) - 5} more")
    tags = "; ".join(shown) if shown else "no tag in dispute now"
    if confidence is None:
        consensus, under = "no consensus estimate yet", None
    else:
        under = confidence < threshold
        relation = "under" if under else "at or above"
        consensus = f"weakest tag {_percent(confidence, threshold)}, {relation} the {_percent(threshold)} threshold"
    if reason is ReviewReason.POLICY_ALL:
        kappa = "" if review_all_below_kappa is None else f" (kappa under {review_all_below_kappa:.2f})"
        return f"Low project agreement{kappa}: every item with two or more labels is reviewed ({tags})"
    if reason is ReviewReason.NO_ANNOTATOR:
        return f"Needs another label, and no annotator who has not labelled it is left ({tags}; {consensus})"
    split = [name for name, n in disputed if n_labels > 1 and 2 * n == n_labels]
    if split and reason in (ReviewReason.DISAGREEMENT, ReviewReason.MAX_LABELS):
        return f"Annotators split evenly: {tags}"
    if reason is ReviewReason.MAX_LABELS:
        return f"Unresolved after {n_labels} labels ({tags}): {consensus}"
    if reason is ReviewReason.DISAGREEMENT:
        return f"Sent to review as a disagreement; now {tags}, {consensus}"
    if under is False:  # LOW_CONFIDENCE, and the posterior has risen since
        return f"Sent to review under the threshold; now {consensus} ({tags})"
    return f"{consensus[:1].upper()}{consensus[1:]} ({tags})"


def _single_review_facts(task, given, posterior, names) -> dict:
    """What a single-label task says about its labels: the chip's words and figures."""
    votes = Counter(names.get(answer) for _, _, answer, _ in given)
    confidence = max((p for _, p in posterior), default=None)
    threshold = task.project.min_consensus_confidence
    return {
        "reason_text": review_reason_text(
            task.reason,
            votes=votes.values(),
            confidence=confidence,
            threshold=threshold,
            review_all_below_kappa=task.project.review_all_below_kappa,
        ),
        "reason_facts": {
            "labels": sum(votes.values()),
            "votes": [{"label": label, "n": n} for label, n in votes.most_common()],
            "confidence": confidence,
            "threshold": threshold,
        },
    }


def _tags_review_facts(task, given, posterior, names) -> dict:
    """What a multi-label task says about its tags: the chip's words and figures (``votes``: per tag,
    the annotators who chose it; ``confidence``: the least confident tag's max(p, 1 - p)), the
    disputed tags, the model's tag set and the decided one."""
    chose = Counter(names.get(label_id) for _, _, answer, _ in given for label_id in answer)
    chose.pop(None, None)
    n_labels = len(given)
    confidence = min((max(p, 1.0 - p) for _, p in posterior), default=None)
    threshold = task.project.min_consensus_confidence
    disputed = [names[label_id] for label_id in task.disputed_tags or () if label_id in names]
    return {
        "reason_text": tags_reason_text(
            task.reason,
            disputed=[(name, chose.get(name, 0)) for name in disputed],
            n_labels=n_labels,
            confidence=confidence,
            threshold=threshold,
            review_all_below_kappa=task.project.review_all_below_kappa,
        ),
        "reason_facts": {
            "labels": n_labels,
            "votes": [{"label": label, "n": n} for label, n in chose.most_common()],
            "confidence": confidence,
            "threshold": threshold,
        },
        "disputed": disputed,
        "model_prediction": None
        if task.model_tags is None
        else {
            "labels": [names[label_id] for label_id in task.model_tags if label_id in names],
            "confidence": task.model_confidence,
        },
        "decision_labels": None
        if task.decision_tags is None
        else [names[label_id] for label_id in task.decision_tags if label_id in names],
    }


def review_payloads(tasks) -> list[dict]:
    """The API shape of review tasks, for a page of them in four queries (tasks with their item and
    users, the items' annotations, the annotators' quality, the label names).

    Answers follow the project's task type (``task_types``): ``label`` per annotation on single-label
    projects, ``labels`` (a tag set) on multi-label ones, whose tasks also carry ``disputed`` (the
    tags in dispute), ``decision_labels`` (the decided tag set) and a ``posterior`` of P(tag present)
    per tag instead of a distribution over labels; both list the entries of at least 0.001, most
    probable first."""
    tasks = list(tasks)
    if not tasks:
        return []
    ids = [task.pk for task in tasks]
    tasks = list(
        ReviewTask.objects.filter(pk__in=ids).select_related(
            "item", "project", "claimed_by", "resolved_by", "decision", "model_label"
        )
    )
    by_id = {task.pk: task for task in tasks}
    tasks = [by_id[pk] for pk in ids if pk in by_id]
    project_ids = {task.project_id for task in tasks}
    kinds = {task.project_id: task_of(task.project) for task in tasks}
    item_ids = [task.item_id for task in tasks]
    username = get_user_model().USERNAME_FIELD
    annotations: dict[int, list[tuple]] = {}
    for item_id, project_id, user_id, name, label_id, tags, created_at in (
        Annotation.objects.filter(item_id__in=item_ids)
        .order_by("created_at", "id")
        .values_list("item_id", "project_id", ANNOTATOR_KEY, f"user__{username}", "label_id", "tags", "created_at")
    ):
        answer = kinds[project_id].stored_answer(label_id, tags) if project_id in kinds else label_id
        annotations.setdefault(item_id, []).append((user_id, name, answer, created_at))
    quality = {
        (project_id, user_id): accuracy
        for project_id, user_id, accuracy in AnnotatorQuality.objects.filter(project_id__in=project_ids).values_list(
            "project_id", "user_id", "ds_accuracy"
        )
    }
    names = dict(LabelClass.objects.filter(project_id__in=project_ids).values_list("id", "name"))
    now = timezone.now()
    out = []
    for task in tasks:
        kind = kinds[task.project_id]
        posterior = sorted(
            ((names.get(int(label_id)), float(p)) for label_id, p in (task.posterior or {}).items()),
            key=lambda pair: -pair[1],
        )
        claimed = task.status == ReviewStatus.OPEN and task.claimed_until is not None and task.claimed_until >= now
        item = task.item
        given = annotations.get(task.item_id, [])
        facts = (_tags_review_facts if kind.multi_label else _single_review_facts)(task, given, posterior, names)
        payload = {
            "id": task.pk,
            "item": {"id": item.pk, "external_id": item.external_id, "text": item.text, "metadata": item.metadata},
            "reason": task.reason,
            "reason_text": facts.pop("reason_text"),
            "reason_facts": facts.pop("reason_facts"),
            "status": task.status,
            "created_at": task.created_at,
            "annotations": [
                {
                    "username": name if name is not None else deleted_user_name(user_id),
                    **kind.response_fields(answer, names),
                    "annotator_quality": quality.get((task.project_id, user_id)),
                    "created_at": created_at,
                }
                for user_id, name, answer, created_at in given
            ],
            "posterior": [{"label": label, "p": p} for label, p in posterior if label is not None],
            "model_prediction": None
            if task.model_label_id is None
            else {"label": task.model_label.name, "confidence": task.model_confidence},
            "claimed_by": task.claimed_by.get_username() if claimed and task.claimed_by else None,
            "resolved_by": task.resolved_by.get_username() if task.resolved_by else None,
            "resolved_at": task.resolved_at,
            "decision": task.decision.name if task.decision else None,
            "note": task.note,
        }
        payload.update(facts)  # multi-label: disputed, model_prediction (a tag set), decision_labels
        out.append(payload)
    return out


def agreement_latest(project: Project) -> dict:
    """The latest agreement snapshot of the project in the API shape (nulls before the first); the
    policy is the one in force now (the snapshot's kappa against the current thresholds)."""
    snapshot = AgreementSnapshot.objects.filter(project=project).order_by("-computed_at", "-id").first()
    if snapshot is None:
        return {
            "computed_at": None,
            "project_kappa": None,
            "fleiss_kappa": None,
            "krippendorff_alpha": None,
            "policy": None,
            "annotators": [],
            "kappa_matrix": {"annotators": [], "values": []},
            "n_annotations": 0,
            "n_items": 0,
            "n_overlap_items": 0,
            "n_gold": 0,
            "n_items_final": 0,
            "duration_ms": None,
        }
    policy = review_policy(
        snapshot.project_kappa,
        snapshot.n_overlap_items,
        review_all_below=project.review_all_below_kappa,
        review_disagreements_below=project.review_disagreements_below_kappa,
    )
    return {
        "computed_at": snapshot.computed_at,
        "project_kappa": snapshot.project_kappa,
        "fleiss_kappa": snapshot.fleiss_kappa,
        "krippendorff_alpha": snapshot.krippendorff_alpha,
        "policy": str(policy),
        "annotators": snapshot.annotators,
        "kappa_matrix": snapshot.kappa_matrix,
        "n_annotations": snapshot.n_annotations,
        "n_items": snapshot.n_items,
        "n_overlap_items": snapshot.n_overlap_items,
        "n_gold": snapshot.n_gold,
        "n_items_final": snapshot.n_items_final,
        "duration_ms": snapshot.duration_ms,
    }


def label_by_name(project_id: int, name) -> LabelClass:
    """The project's label called ``name``; a 400 naming the field and listing the valid names otherwise."""
    found = (
        LabelClass.objects.filter(project_id=project_id, name=name).first() if isinstance(name, str) and name else None
    )
    if found is None:
        names = list(
            LabelClass.objects.filter(project_id=project_id).order_by("order", "id").values_list("name", flat=True)
        )
        shown = ", ".join(repr(n) for n in names[:50]) + (f" … ({len(names)} in all)" if len(names) > 50 else "")
        message = f"unknown label {name!r}; valid labels: {shown}"
        raise ServiceError({"detail": message, "errors": {"label": message}}, code="unknown_label")
    return found
