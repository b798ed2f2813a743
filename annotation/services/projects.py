"""Creating and changing projects and their label sets."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction

from quorum.errors import ServiceError
from quorum.vocabulary import TEXT_CLASSIFICATION, default_strategy

from ..models import LabelClass, Membership, Project, QueueEntry, QueueReason, Role
from ..selectors import labelling_states
from .consensus import entry_route_if_complete, entry_route_if_stuck

# Keys the labelling page keeps for itself: s = skip, u = undo.
RESERVED_SHORTCUTS = frozenset("su")
SHORTCUT_KEYS = "1234567890" + "".join(c for c in "abcdefghijklmnopqrstuvwxyz" if c not in RESERVED_SHORTCUTS)


@dataclass(frozen=True)
class LabelSpec:
    name: str
    shortcut: str | None = None  # None: assign the next free key
    description: str | None = None  # None: "" for a new label, unchanged for an existing one


def _assign_shortcuts(specs: list[LabelSpec], taken: set[str]) -> list[str]:
    """Explicit shortcuts are kept; the others get the next free key of 1-9, 0, a-z (or none)."""
    used = set(taken) | {spec.shortcut for spec in specs if spec.shortcut}
    free = (key for key in SHORTCUT_KEYS if key not in used)
    return [spec.shortcut if spec.shortcut is not None else next(free, "") for spec in specs]


def _check_label_specs(specs: list[LabelSpec], existing: list[LabelClass] = ()) -> None:
    seen: dict[str, str] = {label.name.casefold(): label.name for label in existing}
    keys = {label.shortcut: label.name for label in existing if label.shortcut}
    for spec in specs:
        folded = spec.name.casefold()
        if folded in seen:
            raise ServiceError({"labels": f"label {spec.name!r} repeats {seen[folded]!r}"}, code="duplicate_label")
        seen[folded] = spec.name
        if spec.shortcut:
            if spec.shortcut in RESERVED_SHORTCUTS:
                raise ServiceError(
                    {"labels": f"shortcut {spec.shortcut!r} of {spec.name!r} is reserved (s: skip, u: undo)"}
                )
            if spec.shortcut in keys:
                raise ServiceError(
                    {
                        "labels": f"shortcut {spec.shortcut!r} of {spec.name!r} is already used by {keys[spec.shortcut]!r}"
                    }
                )
            keys[spec.shortcut] = spec.name


@transaction.atomic
def project_create(*, user, name: str, labels: list[LabelSpec], **settings) -> Project:
    """Create a project with its label set; the creator becomes its admin. Without an
    ``acquisition_strategy`` the project starts with its task type's default
    (``quorum.vocabulary.default_strategy``)."""
    if not labels:
        raise ServiceError({"labels": "a project needs at least one label"})
    _check_label_specs(labels)
    settings.setdefault("acquisition_strategy", default_strategy(settings.get("task_type", TEXT_CLASSIFICATION)))
    project = Project(name=name, created_by=user, **settings)
    _validate(project)
    project.save()
    _add_labels(project, labels, start_order=0, taken=set())
    Membership.objects.create(user=user, project=project, role=Role.ADMIN)
    return project


def _validate(project: Project) -> None:
    try:
        project.full_clean(exclude=["created_by"])
    except ValidationError as exc:
        raise ServiceError(exc.message_dict, code="invalid_settings") from None


def _add_labels(project: Project, specs: list[LabelSpec], *, start_order: int, taken: set[str]) -> None:
    shortcuts = _assign_shortcuts(specs, taken)
    LabelClass.objects.bulk_create(
        LabelClass(
            project=project,
            name=spec.name,
            description=spec.description or "",
            order=start_order + offset,
            shortcut=shortcut,
        )
        for offset, (spec, shortcut) in enumerate(zip(specs, shortcuts, strict=True))
    )


@transaction.atomic
def project_update(*, project: Project, labels: list[LabelSpec] | None = None, **settings) -> Project:
    """Change settings; ``labels`` may add labels (appended) or change the description or shortcut
    of existing ones, but not remove or rename any: annotations refer to them.

    A change of ``labels_per_item`` or ``max_labels_per_item`` re-routes the queue's items in the
    same transaction (``_queue_reroute``): no item keeps waiting for a label the project no longer
    asks for."""
    project = Project.objects.select_for_update(no_key=True).get(pk=project.pk)
    before = (project.labels_per_item, project.max_labels_per_item)
    for field_name, value in settings.items():
        setattr(project, field_name, value)
    _validate(project)
    project.save()
    if labels is not None:
        _update_labels(project, labels)
    if (project.labels_per_item, project.max_labels_per_item) != before:
        _queue_reroute(project)
    return project


def _labels_needed(*, reason: str, needed: int, taken: int, labels_per_item: int, max_labels: int) -> int:
    """An entry's ``labels_needed`` under new settings: ``labels_per_item`` for an item not yet
    asked for extra labels, the old count clamped to [``labels_per_item``, ``max_labels_per_item``]
    for one that was; never under the slots already taken (leases and labels cannot be undone)."""
    wanted = min(max(needed, labels_per_item), max_labels) if reason == QueueReason.EXTRA_LABEL else labels_per_item
    return max(wanted, taken, 1)


def _queue_reroute(project: Project) -> None:
    """Apply new ``labels_per_item`` / ``max_labels_per_item`` to the queue: every entry's
    ``labels_needed`` is recomputed (``_labels_needed``), then the items that now hold all their
    labels are routed (final, review or one more label, ``consensus.entry_route_if_complete``) and
    those still missing labels that nobody is left to give go to review
    (``consensus.entry_route_if_stuck``). Lowering ``max_labels_per_item`` thus releases the items
    that waited for a label over the new cap; raising ``labels_per_item`` asks started items for
    more."""
    entries = list(
        QueueEntry.objects.select_for_update()
        .filter(project=project)
        .order_by("id")
        .values_list("id", "item_id", "reason", "labels_needed", "labels_taken")
    )
    changed = []
    for entry_id, _item_id, reason, needed, taken in entries:
        new = _labels_needed(
            reason=reason,
            needed=needed,
            taken=taken,
            labels_per_item=project.labels_per_item,
            max_labels=project.max_labels_per_item,
        )
        if new != needed:
            changed.append(QueueEntry(pk=entry_id, labels_needed=new))
    QueueEntry.objects.bulk_update(changed, ["labels_needed"], batch_size=500)
    started = list(
        QueueEntry.objects.filter(project=project, labels_taken__gt=0).order_by("id").values_list("item_id", flat=True)
    )
    states = labelling_states(project, started)
    for item_id in started:
        if entry_route_if_complete(project=project, item_id=item_id, state=states[item_id]) is None:
            entry_route_if_stuck(project=project, item_id=item_id, state=states[item_id])


def _update_labels(project: Project, specs: list[LabelSpec]) -> None:
    current = list(project.labels.all())
    by_name = {label.name: label for label in current}
    missing = [label.name for label in current if label.name not in {spec.name for spec in specs}]
    if missing:
        raise ServiceError(
            {"labels": f"labels cannot be removed or renamed once a project exists; missing: {missing}"},
            code="labels_removed",
        )
    changed, new_specs = [], []
    for spec in specs:
        label = by_name.get(spec.name)
        if label is None:
            new_specs.append(spec)
            continue
        new_description = spec.description is not None and spec.description != label.description
        new_shortcut = spec.shortcut is not None and spec.shortcut != label.shortcut
        if new_description or new_shortcut:
            if new_description:
                label.description = spec.description
            if new_shortcut:
                label.shortcut = spec.shortcut
            changed.append(label)
    # Against every current label as it will be (changed ones already hold their new shortcut).
    _check_label_specs(new_specs, current)
    _check_shortcuts_unique(current)
    if changed:
        # Free the keys first so that two labels may swap shortcuts in one request.
        LabelClass.objects.filter(pk__in=[label.pk for label in changed]).update(shortcut="")
        LabelClass.objects.bulk_update(changed, ["description", "shortcut"])
    taken = {label.shortcut for label in current if label.shortcut}
    _add_labels(project, new_specs, start_order=max((label.order for label in current), default=-1) + 1, taken=taken)


def _check_shortcuts_unique(labels: list[LabelClass]) -> None:
    seen: dict[str, str] = {}
    for label in labels:
        if not label.shortcut:
            continue
        if label.shortcut in RESERVED_SHORTCUTS:
            raise ServiceError(
                {"labels": f"shortcut {label.shortcut!r} of {label.name!r} is reserved (s: skip, u: undo)"}
            )
        if label.shortcut in seen:
            raise ServiceError(
                {"labels": f"shortcut {label.shortcut!r} is given to both {seen[label.shortcut]!r} and {label.name!r}"}
            )
        seen[label.shortcut] = label.name


@transaction.atomic
def project_delete(*, project: Project) -> None:
    """Delete the project and everything under it (items, annotations and their history, reviews,
    queue, snapshots, the model side's rows) in one transaction. Labels in use are ``RESTRICT``ed,
    which lets them go only together with their project. Files on disk (embedding caches, model
    weights) are the model side's: its receivers remove them once the deletion commits."""
    Project.objects.select_for_update().filter(pk=project.pk).first()
    project.delete()
