"""Task types on the people side: what one answer is, and how it is read, stored, compared and shown.

A project's ``task_type`` (``quorum.vocabulary``) names one of the objects below; the services, the
API and the pages ask :func:`task_of` instead of testing the type:

==================  ==============================  ===============================================
                    ``text_classification``         ``multi_label``
==================  ==============================  ===============================================
an answer           one label id (``int``)          a tag set: sorted tuple of label ids, empty
                                                    when the project allows it (``allow_empty_tags``)
request field       ``"label": "refund"``           ``"labels": ["refund", "complaint"]``
stored on           ``Annotation.label``            ``Annotation.tags``
final answer        ``Item.final_label``            ``Item.final_tags`` (+ ``tag_posteriors``)
==================  ==============================  ===============================================

The model side has its own counterpart (``acquisition.task_types``: heads, metrics, strategies).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from quorum.errors import ServiceError
from quorum.vocabulary import MULTI_LABEL, TEXT_CLASSIFICATION

from .models import Annotation, LabelClass, Project

Answer = Any  # int (single label) or tuple[int, ...] (tag set)

MAX_TAGS = 1000


def _names_shown(project_id: int) -> str:
    names = list(
        LabelClass.objects.filter(project_id=project_id).order_by("order", "id").values_list("name", flat=True)
    )
    return ", ".join(repr(n) for n in names[:50]) + (f" … ({len(names)} in all)" if len(names) > 50 else "")


def _invalid(field: str, message: str, code: str) -> ServiceError:
    return ServiceError({"detail": f"{field}: {message}", "errors": {field: message}}, code=code)


class SingleLabel:
    """One label per item."""

    value = TEXT_CLASSIFICATION
    multi_label = False
    answer_field = "label"
    other_field = "labels"

    def parse(self, project: Project, *, label=None, labels=None) -> int:
        """The label id of a request's ``label`` (a name of the project's labels)."""
        if labels is not None:
            raise _invalid("labels", 'this project takes one label per item: send "label"', "wrong_answer_field")
        if not isinstance(label, str) or not label:
            raise _invalid("label", "a label name is required", "required")
        found = LabelClass.objects.filter(project_id=project.pk, name=label).values_list("pk", flat=True).first()
        if found is None:
            message = f"unknown label {label!r}; valid labels: {_names_shown(project.pk)}"
            raise ServiceError({"detail": message, "errors": {"label": message}}, code="unknown_label")
        return found

    def fields(self, answer: int) -> dict:
        """The ``Annotation`` columns that store ``answer``."""
        return {"label_id": answer, "tags": None}

    def answer_of(self, annotation: Annotation) -> int:
        return annotation.label_id

    def stored_answer(self, label_id, tags) -> int:
        """The answer of an annotation row read as ``(label_id, tags)`` values."""
        return label_id

    def as_json(self, answer: int, names: Mapping[int, str]):
        return names.get(answer)

    def response_fields(self, answer: int, names: Mapping[int, str]) -> dict:
        return {"label": names.get(answer)}


class MultiLabel:
    """A tag set per item: any subset of the project's labels."""

    value = MULTI_LABEL
    multi_label = True
    answer_field = "labels"
    other_field = "label"

    def parse(self, project: Project, *, label=None, labels=None) -> tuple[int, ...]:
        """The sorted label ids of a request's ``labels`` (names of the project's labels, each at most
        once; empty only when the project allows an empty set)."""
        if label is not None and labels is None:
            raise _invalid(
                "label", 'this project takes a tag set per item: send "labels": [names]', "wrong_answer_field"
            )
        if labels is None:
            raise _invalid("labels", "a list of label names is required", "required")
        if not isinstance(labels, list | tuple) or not all(isinstance(name, str) for name in labels):
            raise _invalid("labels", "must be a list of label names", "invalid")
        if len(labels) > MAX_TAGS:
            raise _invalid("labels", f"at most {MAX_TAGS} names", "invalid")
        if len(set(labels)) != len(labels):
            repeated = sorted({name for name in labels if labels.count(name) > 1})
            raise _invalid(
                "labels", f"each label at most once; repeated: {', '.join(map(repr, repeated[:10]))}", "invalid"
            )
        if not labels and not project.allow_empty_tags:
            raise _invalid("labels", "this project needs at least one label per item (no empty tag set)", "empty_tags")
        ids = dict(LabelClass.objects.filter(project_id=project.pk, name__in=labels).values_list("name", "pk"))
        unknown = [name for name in labels if name not in ids]
        if unknown:
            message = f"unknown label(s) {', '.join(map(repr, unknown[:10]))}; valid labels: {_names_shown(project.pk)}"
            raise ServiceError({"detail": message, "errors": {"labels": message}}, code="unknown_label")
        return tuple(sorted(ids[name] for name in labels))

    def fields(self, answer: tuple[int, ...]) -> dict:
        return {"label_id": None, "tags": list(answer)}

    def answer_of(self, annotation: Annotation) -> tuple[int, ...]:
        return tuple(annotation.tags or ())

    def stored_answer(self, label_id, tags) -> tuple[int, ...]:
        return tuple(tags or ())

    def as_json(self, answer: Iterable[int], names: Mapping[int, str]) -> list[str]:
        return [names[i] for i in answer if i in names]

    def response_fields(self, answer: Iterable[int], names: Mapping[int, str]) -> dict:
        return {"labels": self.as_json(answer, names)}


TASKS = {task.value: task for task in (SingleLabel(), MultiLabel())}


def task_of(project_or_type) -> SingleLabel | MultiLabel:
    """The task object of a project (or of a ``task_type`` value)."""
    task_type = project_or_type if isinstance(project_or_type, str) else project_or_type.task_type
    return TASKS[task_type]


def label_names(project_id: int) -> dict[int, str]:
    return dict(LabelClass.objects.filter(project_id=project_id).values_list("pk", "name"))
