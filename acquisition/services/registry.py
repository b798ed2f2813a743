"""The model registry: where trained versions are kept, loaded and made current.

- ``model_load(version, role=...)``: the version's model, read from Django's storage once per process
  (a small cache keyed by version, weights file and role). ``serving`` is the model refitted on
  every label, which scores the pool and suggests labels; ``evaluation`` the one fitted without the
  held-out labels, which the metrics and the gate are about. A version without a held-out set has
  one model for both. The state's ``kind`` says what to rebuild: a fine-tuned encoder, a
  semi-supervised head (``acquisition.semisupervised``), a head with a committee beside it (QBC,
  BALD) or a plain ``HeadCommittee``.
- ``model_promote``: make a version current (the previous one retires): the gate's promotion and
  the admins' roll back alike.
- ``committee_device`` / ``code_version``: where models run and which code trained them (lineage).
"""

from __future__ import annotations

import functools
import importlib.metadata
import io
import logging
import subprocess
import threading
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from annotation.models import Project
from quorum.errors import Conflict

from ..models import ModelVersion

logger = logging.getLogger(__name__)


def committee_device() -> str:
    from ..encoders import resolve_device  # PyTorch loads where a model runs, not in web processes

    return str(resolve_device(settings.QUORUM_DEVICE))


@functools.cache
def code_version() -> str:
    """The package version, plus the git commit when running from a checkout."""

    try:
        base = importlib.metadata.version("quorum")
    except importlib.metadata.PackageNotFoundError:
        base = "dev"
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{base}+{commit}" if commit else base


PROMOTABLE = (
    ModelVersion.Status.CANDIDATE,
    ModelVersion.Status.REJECTED,
    ModelVersion.Status.RETIRED,
    ModelVersion.Status.CURRENT,
)


def model_promote(*, version: ModelVersion, reason: str, user=None) -> ModelVersion:
    """Make ``version`` the project's current model (the previous one retires). Also the roll back:
    any version that trained successfully can be made current again. Idempotent."""
    with transaction.atomic():
        Project.objects.select_for_update(no_key=True).filter(pk=version.project_id).first()
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.status == ModelVersion.Status.CURRENT:
            return version
        if version.status not in PROMOTABLE or not version.weights:
            raise Conflict(
                f"model v{version.version} is {version.status} and cannot be made current", code="not_promotable"
            )
        ModelVersion.objects.filter(project_id=version.project_id, status=ModelVersion.Status.CURRENT).update(
            status=ModelVersion.Status.RETIRED
        )
        was_candidate = version.status == ModelVersion.Status.CANDIDATE
        version.status = ModelVersion.Status.CURRENT
        version.promoted_at = timezone.now()
        who = f" by {user.get_username()}" if user is not None else ""
        if was_candidate:
            version.decision = (reason + who)[:5000]
        else:
            # A roll back: the version's own decision (why the gate promoted or rejected it) stays;
            # the new decision is added below it, dated.
            stamp = timezone.localtime(version.promoted_at).strftime("%Y-%m-%d %H:%M")
            version.decision = f"{version.decision}\n{stamp}: {reason}{who}".strip()[-5000:]
        version.save(update_fields=["status", "promoted_at", "decision"])
    logger.info("%s promoted: %s", version, version.decision)
    return version


_MODELS: dict[tuple[int, str, str], object] = {}
_MODELS_LOCK = threading.Lock()
SERVING, EVALUATION = "serving", "evaluation"


def remember(version: ModelVersion, model, *, role: str = SERVING) -> None:
    with _MODELS_LOCK:
        if len(_MODELS) > 16:
            _MODELS.clear()
        _MODELS[(version.pk, version.weights.name, role)] = model


def model_load(version: ModelVersion, *, role: str = SERVING):
    """The version's model, read from storage once per process. ``role``: ``serving`` (refitted on
    every label; scores the pool) or ``evaluation`` (fitted without the held-out labels; what the
    metrics and the gate are about). A version without a held-out set has one model for both."""
    key = (version.pk, version.weights.name, role)
    model = _MODELS.get(key)
    if model is None:
        import torch  # PyTorch loads where a model runs, not in web processes

        from ..finetune import FineTunedClassifier  # PyTorch loads where a model runs, not in web processes
        from ..heads import head_from_state_dict  # PyTorch loads where a model runs, not in web processes

        with version.weights.open("rb") as handle:
            state = torch.load(io.BytesIO(handle.read()), map_location="cpu", weights_only=True)
        if SERVING in state:
            state = state[role]
        if state.get("kind") == "finetune":
            model = FineTunedClassifier.from_state_dict(state, device=committee_device())
        else:  # a head, a semi-supervised head, or a head with a committee beside it
            model = head_from_state_dict(state, device=committee_device())
        remember(version, model, role=role)
    return model
