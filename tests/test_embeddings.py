"""The embedding task (hashing encoder) and the incremental embedding cache."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from acquisition import embeddings
from acquisition.encoders import get_encoder
from acquisition.models import ItemEmbedding
from acquisition.services import embedding
from annotation.models import EmbeddingState, Item
from loop import tasks
from loop.services.push import ingest_batch_process
from quorum.errors import ServiceError

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def cache_dir(settings, tmp_path):
    settings.QUORUM_CACHE_DIR = tmp_path / "cache"
    return settings.QUORUM_CACHE_DIR


@pytest.fixture
def hashing_project(project):
    project.encoder = "hashing:4"
    project.save(update_fields=["encoder"])
    return project


def push(api, project, records, **params):
    query = "?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else ""
    response = api.post(f"/api/v1/projects/{project.pk}/items{query}", records, format="json")
    assert response.status_code in (200, 201), response.content
    return response.json()


TEXTS = ["my card was stolen", "refund my order please", "where is my parcel", "cancel the subscription", "hello"]


def test_embed_task_encodes_waiting_items_and_marks_them_ready(admin_api, hashing_project):
    push(admin_api, hashing_project, [{"external_id": f"t{i}", "text": t} for i, t in enumerate(TEXTS)])
    assert Item.objects.filter(project=hashing_project, embedding_state=EmbeddingState.PENDING).count() == 5

    result = tasks.items_embed(hashing_project.pk)

    assert result["embedded"] == 5 and result["failed"] == 0
    assert not Item.objects.filter(project=hashing_project).exclude(embedding_state=EmbeddingState.READY).exists()
    encoder = get_encoder("hashing:4")
    for item in Item.objects.filter(project=hashing_project):
        row = ItemEmbedding.objects.get(item=item)
        assert row.dim == 4 and row.source == "hashing:4" and row.project_id == hashing_project.pk
        np.testing.assert_array_equal(row.as_array(), encoder.encode([item.text])[0])


def test_embed_task_is_idempotent(admin_api, hashing_project):
    push(admin_api, hashing_project, [{"external_id": f"t{i}", "text": t} for i, t in enumerate(TEXTS)])
    tasks.items_embed(hashing_project.pk)
    before = dict(ItemEmbedding.objects.values_list("item_id", "updated_at"))

    again = tasks.items_embed(hashing_project.pk)

    assert again["embedded"] == 0 and again["batches"] == 0
    assert dict(ItemEmbedding.objects.values_list("item_id", "updated_at")) == before


def test_embed_task_works_in_batches_and_on_given_items(admin_api, hashing_project):
    push(admin_api, hashing_project, [{"external_id": f"t{i}", "text": f"text {i}"} for i in range(7)])
    first_three = list(Item.objects.filter(project=hashing_project).order_by("pk").values_list("pk", flat=True)[:3])

    report = embedding.items_embed(project=hashing_project, item_ids=first_three, batch_size=2)
    assert (report.embedded, report.batches) == (3, 2)
    assert set(ItemEmbedding.objects.values_list("item_id", flat=True)) == set(first_three)

    report = embedding.items_embed(project=hashing_project, batch_size=2)
    assert (report.embedded, report.batches) == (4, 2)


def test_changed_text_invalidates_and_reembeds(admin_api, hashing_project):
    push(admin_api, hashing_project, [{"external_id": "a", "text": "old words"}])
    tasks.items_embed(hashing_project.pk)
    push(admin_api, hashing_project, [{"external_id": "a", "text": "completely new words"}])
    item = Item.objects.get(project=hashing_project, external_id="a")
    assert item.embedding_state == EmbeddingState.PENDING
    assert not ItemEmbedding.objects.filter(item=item).exists()

    tasks.items_embed(hashing_project.pk)

    np.testing.assert_array_equal(
        ItemEmbedding.objects.get(item=item).as_array(), get_encoder("hashing:4").encode(["completely new words"])[0]
    )


def test_text_changed_while_encoding_is_not_marked_ready(admin_api, hashing_project, monkeypatch):
    push(admin_api, hashing_project, [{"external_id": "a", "text": "before"}, {"external_id": "b", "text": "other"}])
    encoder = get_encoder("hashing:4")
    original = type(encoder).encode

    def encode_while_text_changes(self, texts, batch_size=None):
        # An ingest changes item a's text while the batch is being encoded.
        push(admin_api, hashing_project, [{"external_id": "a", "text": "after"}])
        return original(self, texts, batch_size)

    monkeypatch.setattr(type(encoder), "encode", encode_while_text_changes)
    report = embedding.items_embed(project=hashing_project)
    monkeypatch.setattr(type(encoder), "encode", original)

    assert (report.embedded, report.stale) == (1, 1)
    a = Item.objects.get(project=hashing_project, external_id="a")
    assert a.embedding_state == EmbeddingState.PENDING and not ItemEmbedding.objects.filter(item=a).exists()
    assert Item.objects.get(project=hashing_project, external_id="b").embedding_state == EmbeddingState.READY

    embedding.items_embed(project=hashing_project)  # the next pass embeds the new text
    np.testing.assert_array_equal(ItemEmbedding.objects.get(item=a).as_array(), encoder.encode(["after"])[0])


def test_items_pushed_with_their_own_embedding_skip_the_encoder(admin_api, hashing_project):
    push(
        admin_api,
        hashing_project,
        [{"external_id": "own", "text": "has a vector", "embedding": [1, 0, 0, 0]}, {"external_id": "x", "text": "no"}],
    )
    report = embedding.items_embed(project=hashing_project)
    assert report.embedded == 1
    own = ItemEmbedding.objects.get(item__external_id="own")
    assert own.source == "provided"
    np.testing.assert_array_equal(own.as_array(), [1, 0, 0, 0])


def test_an_item_the_encoder_cannot_handle_is_marked_failed(admin_api, hashing_project, monkeypatch, caplog):
    push(admin_api, hashing_project, [{"external_id": f"t{i}", "text": t} for i, t in enumerate(TEXTS)])
    encoder = get_encoder("hashing:4")
    original = type(encoder).encode

    def picky(self, texts, batch_size=None):
        if "hello" in texts:
            raise ValueError("cannot tokenise this")
        return original(self, texts, batch_size)

    monkeypatch.setattr(type(encoder), "encode", picky)
    report = embedding.items_embed(project=hashing_project)
    monkeypatch.setattr(type(encoder), "encode", original)

    assert (report.embedded, report.failed) == (4, 1)
    assert Item.objects.get(project=hashing_project, text="hello").embedding_state == EmbeddingState.FAILED
    assert "cannot tokenise this" in caplog.text


def test_an_encoder_broken_for_every_item_raises_for_a_retry(admin_api, hashing_project, monkeypatch):
    push(admin_api, hashing_project, [{"external_id": f"t{i}", "text": t} for i, t in enumerate(TEXTS)])
    encoder = get_encoder("hashing:4")

    def broken(self, texts, batch_size=None):
        raise OSError("model files vanished")

    monkeypatch.setattr(type(encoder), "encode", broken)
    with pytest.raises(OSError):
        embedding.items_embed(project=hashing_project)
    assert not Item.objects.filter(project=hashing_project, embedding_state=EmbeddingState.FAILED).exists()


def test_an_encoder_of_the_wrong_dimension_is_refused(admin_api, project):
    project.encoder = "hashing:8"  # the project stores 4-d vectors
    project.save(update_fields=["encoder"])
    push(admin_api, project, [{"external_id": "a", "text": "x"}])
    with pytest.raises(ServiceError):
        embedding.items_embed(project=project)
    assert tasks.items_embed(project.pk)["status"] == "error"
    assert Item.objects.get(project=project).embedding_state == EmbeddingState.PENDING


def test_ingest_follow_up_hands_waiting_items_to_the_encoder(admin_api, hashing_project, monkeypatch):
    sent = []
    monkeypatch.setattr(tasks.items_embed, "apply_async", lambda args=None, kwargs=None, **options: sent.append(args))
    body = push(admin_api, hashing_project, [{"external_id": f"t{i}", "text": t} for i, t in enumerate(TEXTS)])
    result = ingest_batch_process(body["batch_id"])
    assert result["project_items_awaiting_embedding"] == 5
    assert Item.objects.filter(project=hashing_project, embedding_state=EmbeddingState.QUEUED).count() == 5


def test_ingest_follow_up_with_pushed_vectors_requests_a_scoring_run(admin_api, hashing_project):
    body = push(
        admin_api,
        hashing_project,
        [{"external_id": f"t{i}", "text": f"text {i}", "embedding": [1, i, 0, 0]} for i in range(3)],
    )
    result = ingest_batch_process(body["batch_id"])
    assert result["project_items_awaiting_embedding"] == 0
    assert hashing_project.scoring_runs.get().pk == result["scoring_run"]


# --------------------------------------------------------------------------------- the cache
def make_vectors(project, n, *, start=0):
    items = Item.objects.bulk_create(
        [
            Item(project=project, external_id=f"e{start + i}", text=f"text {start + i}", text_hash=f"h{start + i}")
            for i in range(n)
        ]
    )
    rng = np.random.default_rng(start)
    vectors = rng.normal(size=(n, project.embedding_dim)).astype("<f4")
    ItemEmbedding.objects.bulk_create(
        [
            ItemEmbedding(
                item=item, project=project, vector=vectors[i].tobytes(), dim=project.embedding_dim, source="t"
            )
            for i, item in enumerate(items)
        ]
    )
    Item.objects.filter(pk__in=[i.pk for i in items]).update(embedding_state=EmbeddingState.READY)
    return [item.pk for item in items], vectors


def assert_matches_database(matrix, project):
    rows = dict(ItemEmbedding.objects.filter(project=project).values_list("item_id", "vector"))
    assert matrix.ids.tolist() == sorted(rows)
    expected = np.stack([np.frombuffer(bytes(rows[i]), dtype="<f4") for i in sorted(rows)]) if rows else None
    if expected is not None:
        np.testing.assert_array_equal(np.asarray(matrix.vectors), expected)


def test_first_load_reads_everything_then_nothing_when_unchanged(project, settings):
    settings.QUORUM_EMBEDDING_CACHE_OVERLAP = 0
    make_vectors(project, 50)

    first = embeddings.embeddings_load(project)
    assert first.stats.full_reload and first.stats.rows_read == 50
    assert_matches_database(first, project)

    second = embeddings.embeddings_load(project)
    assert not second.stats.full_reload
    assert (second.stats.rows_read, second.stats.rows_changed, second.stats.id_scans) == (0, 0, 0)
    assert second.generation == first.generation
    assert_matches_database(second, project)


def test_refresh_reads_only_changed_rows(project, settings, monkeypatch):
    settings.QUORUM_EMBEDDING_CACHE_OVERLAP = 0
    monkeypatch.setattr(embeddings, "WRITE_BLOCK", 7)  # several blocks mixing cached and new rows
    ids, _ = make_vectors(project, 40)
    first = embeddings.embeddings_load(project)

    changed = ids[5:8]
    for pk in changed:
        ItemEmbedding.objects.filter(item_id=pk).update(
            vector=np.full(4, pk, dtype="<f4").tobytes(), updated_at=timezone.now() + timedelta(seconds=1)
        )
    new_ids, _ = make_vectors(project, 4, start=100)
    ItemEmbedding.objects.filter(item_id__in=new_ids).update(updated_at=timezone.now() + timedelta(seconds=1))

    matrix = embeddings.embeddings_load(project)
    assert matrix.stats.rows_read == 7 and matrix.stats.rows_changed == 7 and matrix.stats.id_scans == 0
    assert matrix.generation == first.generation + 1
    assert_matches_database(matrix, project)
    changed_rows = matrix.positions(changed + new_ids)
    assert (matrix.generations[changed_rows] == matrix.generation).all()
    assert (np.delete(matrix.generations, changed_rows) == first.generation).all()


def test_rows_reread_inside_the_overlap_are_not_changes(project, settings):
    settings.QUORUM_EMBEDDING_CACHE_OVERLAP = 3600
    make_vectors(project, 20)
    first = embeddings.embeddings_load(project)
    again = embeddings.embeddings_load(project)
    assert again.stats.rows_read == 20  # everything is inside the hour of overlap…
    assert again.stats.rows_changed == 0 and again.generation == first.generation  # …and nothing changed


def test_deleted_rows_leave_the_cache(project, settings):
    settings.QUORUM_EMBEDDING_CACHE_OVERLAP = 0
    ids, _ = make_vectors(project, 30)
    embeddings.embeddings_load(project)

    ItemEmbedding.objects.filter(item_id__in=ids[:4]).delete()
    matrix = embeddings.embeddings_load(project)

    assert (matrix.stats.rows_read, matrix.stats.rows_deleted, matrix.stats.id_scans) == (0, 4, 1)
    assert_matches_database(matrix, project)


def test_a_late_commit_older_than_the_watermark_is_still_found(project, settings):
    settings.QUORUM_EMBEDDING_CACHE_OVERLAP = 0
    make_vectors(project, 10)
    embeddings.embeddings_load(project)
    late, _ = make_vectors(project, 2, start=50)
    ItemEmbedding.objects.filter(item_id__in=late).update(updated_at=timezone.now() - timedelta(days=1))

    matrix = embeddings.embeddings_load(project)

    assert matrix.stats.id_scans == 1 and matrix.stats.rows_read == 2
    assert_matches_database(matrix, project)


def test_the_cache_is_per_project_and_never_reused_for_a_recreated_project(project, make_project, cache_dir):
    make_vectors(project, 5)
    embeddings.embeddings_load(project)
    other = make_project("B")
    make_vectors(other, 3, start=10)
    assert len(embeddings.embeddings_load(other)) == 3

    project.created_at = project.created_at - timedelta(seconds=1)  # as if the id were reused
    assert embeddings.embeddings_load(project).stats.full_reload


def test_vectors_of_another_dimension_are_ignored(project):
    make_vectors(project, 3)
    item = Item.objects.create(project=project, external_id="wide", text="w", text_hash="w")
    ItemEmbedding.objects.create(item=item, project=project, vector=np.zeros(8, "<f4").tobytes(), dim=8, source="t")
    matrix = embeddings.embeddings_load(project)
    assert len(matrix) == 3 and item.pk not in matrix.ids


def test_the_minilm_encoder_works_through_the_task(admin_api, make_project):
    project = make_project("MiniLM", embedding_dim=384, encoder="sentence-transformers/all-MiniLM-L6-v2")
    texts = ["I lost my card", "my card is lost", "the weather is lovely today"]
    push(admin_api, project, [{"external_id": f"m{i}", "text": t} for i, t in enumerate(texts)])

    result = tasks.items_embed(project.pk)

    assert result["embedded"] == 3
    rows = {e.item.text: e.as_array() for e in ItemEmbedding.objects.filter(project=project).select_related("item")}
    assert all(v.shape == (384,) and abs(np.linalg.norm(v) - 1) < 1e-4 for v in rows.values())
    assert ItemEmbedding.objects.filter(project=project).first().source == "sentence-transformers/all-MiniLM-L6-v2"
    same = rows[texts[0]] @ rows[texts[1]]
    other = rows[texts[0]] @ rows[texts[2]]
    assert same > 0.7 > other
