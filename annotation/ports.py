"""What the people side needs from the rest of Quorum, as interfaces it owns (ports).

``annotation`` imports nothing from ``acquisition`` or ``loop`` (an import-linter contract). Where a
people-side write needs the model side, it asks a port, and ``loop`` (the only app that knows both
sides) plugs the implementations in when Django starts (``loop.apps.LoopConfig.ready``). Events go
the other way as Django signals (``annotation.signals``).

- ``VectorStore``: where the vectors pushed with records live (``acquisition``'s embedding table).
  Ingest compares, drops and writes them inside its own transaction, so a push stays atomic.
- ``QueueSupply``: who fills the queue besides item order. The next-item path asks whether a model
  fill has started (until then annotators may top the queue up in item order), whether one is on
  its way (the progress line says so), and asks for one when the queue runs low.

Without ``loop`` installed the queue is fed in item order only, and pushed vectors are refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from django.core.exceptions import ImproperlyConfigured

from .models import Project


class VectorStore(Protocol):
    def same(self, pushed: dict[int, bytes]) -> set[int]:
        """Ids among ``pushed`` (item id → float32 bytes) whose stored vector is byte-identical."""

    def drop(self, item_ids: Iterable[int]) -> None:
        """Forget the vectors of these items (their text changed)."""

    def write(self, project: Project, vectors: dict[int, bytes], *, source: str) -> None:
        """Store (insert or replace) these vectors of the project's items."""


class QueueSupply(Protocol):
    def started(self, project: Project) -> bool:
        """A model fill of the queue has succeeded or is on its way (item order no longer stands in)."""

    def running(self, project: Project) -> bool:
        """A fill is on its way now."""

    def request(self, project: Project) -> bool:
        """The queue runs low: ask for a fill. Returns whether one is on its way."""


class ItemOrderSupply:
    """The supply when nothing else fills the queue: item order only."""

    def started(self, project: Project) -> bool:
        return False

    def running(self, project: Project) -> bool:
        return False

    def request(self, project: Project) -> bool:
        return False


_installed: dict[str, object] = {"supply": ItemOrderSupply()}


def install(*, vectors: VectorStore | None = None, supply: QueueSupply | None = None) -> None:
    """Plug implementations in (``loop`` does, once, at start-up; tests may swap them)."""
    if vectors is not None:
        _installed["vectors"] = vectors
    if supply is not None:
        _installed["supply"] = supply


def vector_store() -> VectorStore:
    try:
        return _installed["vectors"]
    except KeyError:
        raise ImproperlyConfigured("no vector store is installed: add 'loop' to INSTALLED_APPS") from None


def queue_supply() -> QueueSupply:
    return _installed["supply"]
