"""The model side's files on disk, removed when their rows go (``loop.receivers`` calls these once
the deleting transaction commits): a model version's weights file (Django storage) and a project's
embedding cache folder (``embeddings.cache_folder``) and weights folder."""

from __future__ import annotations

import logging
import shutil

from django.core.files.storage import default_storage

from ..embeddings import cache_folder

logger = logging.getLogger(__name__)

WEIGHTS_FOLDER = "models/project-{project_id}"  # where ``fitting`` saves a project's weights


def weights_remove(name: str, storage=default_storage) -> None:
    """Delete one weights file (a missing one is fine)."""
    if not name:
        return
    try:
        storage.delete(name)
    except OSError:
        logger.exception("could not delete the weights file %s", name)


def project_files_remove(project_id: int) -> None:
    """Delete a deleted project's embedding cache and weights folders (missing ones are fine)."""
    shutil.rmtree(cache_folder(project_id), ignore_errors=True)
    folder = WEIGHTS_FOLDER.format(project_id=project_id)
    try:
        path = default_storage.path(folder)
    except NotImplementedError:  # a remote storage: its files went one by one (``weights_remove``)
        return
    shutil.rmtree(path, ignore_errors=True)
