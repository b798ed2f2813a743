"""Row locks of the queue take only the rows they mean to: the item's queue entry, never its project.

``QueueEntry``'s default ordering starts with ``project``; a ``select_for_update().first()`` on it
joined ``annotation_project`` and, on PostgreSQL, locked the project row too. The aggregation (and
every queue writer) holds that row for its whole run, so a submit waiting on it while holding its
entry deadlocked against an aggregation that wanted the entry (seen in the loop's worker test).
"""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from annotation.services import consensus, slots
from annotation.services.queue import QueueCandidate, queue_replace
from tests.invariants import make_items

pytestmark = pytest.mark.django_db


def _lock_queries(call) -> list[str]:
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        call()
    return [q["sql"] for q in queries.captured_queries if "annotation_queueentry" in q["sql"]]


def test_locking_an_entry_never_touches_the_project_row(project):
    item = make_items(project, 1)[0]
    queue_replace(project=project, candidates=[QueueCandidate(item_id=item.pk, priority=1.0)], strategy="margin")
    for call in (
        lambda: slots.locked_entry(item.pk),
        lambda: consensus.entry_route_if_complete(project=project, item_id=item.pk),
        lambda: consensus.entry_route_if_stuck(project=project, item_id=item.pk),
    ):
        sql = _lock_queries(call)[0]
        assert "annotation_project" not in sql
        if connection.features.has_select_for_update_of:
            assert 'FOR UPDATE OF "annotation_queueentry"' in sql
