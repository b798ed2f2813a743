"""Drift statistics against SciPy and a hand-worked PSI; the drift check of pushed pools."""

import numpy as np
import pytest
from scipy.stats import ks_2samp

from acquisition import drift
from acquisition.models import ItemEmbedding, ModelVersion
from acquisition.services.drift import batch_drift_check, drift_pending_check
from annotation import services
from annotation.ingest_records import CleanRecord, text_digest
from annotation.models import IngestBatch, Item, ItemStatus, LabelSource
from loop.services.push import ingest_batch_process


def test_psi_by_hand():
    # Reference split in two equal halves by its median; the new sample puts 80% in the upper bin:
    # PSI = (0.2 − 0.5)·ln(0.2/0.5) + (0.8 − 0.5)·ln(0.8/0.5) = 0.2749 + 0.1410 = 0.4159
    reference = np.arange(100, dtype=float)
    new = np.array([10.0] * 20 + [90.0] * 80)
    assert drift.psi(reference, new, bins=2) == pytest.approx(0.3 * np.log(2.5) + 0.3 * np.log(1.6))
    assert drift.psi(reference, reference, bins=10) == pytest.approx(0.0)


def test_empty_bins_do_not_give_infinity():
    assert np.isfinite(drift.psi(np.arange(100.0), np.full(50, 1000.0)))


@pytest.mark.parametrize("shift", [0.0, 0.3, 2.0])
def test_ks_matches_scipy(shift):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=700), rng.normal(loc=shift, size=300)
    expected = ks_2samp(a, b, method="asymp")
    assert drift.ks_statistic(a, b) == pytest.approx(expected.statistic)
    assert drift.ks_pvalue(expected.statistic, 700, 300) == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-12)


def test_report_levels():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(2000, 16))
    same = drift.drift_report(reference, rng.normal(size=(500, 16)))
    assert same["level"] == "ok" and len(same["components"]) == 3 and same["psi_max"] < 0.1
    moved = rng.normal(size=(500, 16))
    moved[:, :3] += 2.0  # along the directions the reference varies in
    shifted = drift.drift_report(reference, moved)
    assert shifted["level"] == "critical" and shifted["ks_max"] > 0.3
    assert drift.level(0.05) == "ok" and drift.level(0.1) == "warning" and drift.level(0.3) == "critical"


DIM = 8


def push(project, rows, offset=0):
    records = [
        CleanRecord(
            i, f"e-{offset + i}", f"t {offset + i}", text_digest(f"t {offset + i}"), {}, v.astype("<f4").tobytes()
        )
        for i, v in enumerate(rows)
    ]
    return services.items_ingest(project=project, records=records, rejected=[], fmt="json")


@pytest.mark.django_db
def test_pushed_pools_are_checked_against_the_training_items(make_project, settings, tmp_path):
    settings.QUORUM_CACHE_DIR = tmp_path
    project = make_project("Drifting", embedding_dim=DIM)
    rng = np.random.default_rng(2)
    first = push(project, rng.normal(size=(1500, DIM)))
    ingest_batch_process(first.batch_id)
    batch = IngestBatch.objects.get(pk=first.batch_id)
    assert batch.drift["status"] == "no_reference"  # no model yet

    # a current model trained on the first 200 items
    ids = list(Item.objects.filter(project=project).order_by("pk").values_list("pk", flat=True))
    label = project.labels.first()
    Item.objects.filter(pk__in=ids[:1200]).update(
        final_label=label, final_source=LabelSource.CONSENSUS, status=ItemStatus.FINALIZED
    )
    from django.utils import timezone

    ModelVersion.objects.create(project=project, version=1, status="current", labels_as_of=timezone.now())

    similar = push(project, rng.normal(size=(1000, DIM)), offset=10_000)
    moved = rng.normal(size=(1000, DIM))
    moved[:, 0] += 3.0
    shifted = push(project, moved, offset=20_000)
    for report in (similar, shifted):
        ingest_batch_process(report.batch_id)
    similar, shifted = IngestBatch.objects.get(pk=similar.batch_id), IngestBatch.objects.get(pk=shifted.batch_id)
    assert similar.drift["status"] == "done" and similar.drift["level"] == "ok"
    assert similar.drift["n_reference"] == 1200 and similar.drift["n_new"] == 1000
    assert shifted.drift["level"] == "critical" and shifted.drift["model_version"] == 1


@pytest.mark.django_db
def test_a_batch_waits_for_its_embeddings(make_project, settings, tmp_path):
    settings.QUORUM_CACHE_DIR = tmp_path
    project = make_project("Waiting", embedding_dim=DIM)
    records = [CleanRecord(i, f"w-{i}", f"w {i}", text_digest(f"w {i}"), {}, None) for i in range(5)]
    report = services.items_ingest(project=project, records=records, rejected=[], fmt="json")
    batch = IngestBatch.objects.get(pk=report.batch_id)
    assert np.frombuffer(bytes(batch.drift_items), dtype="<i8").size == 5
    assert batch_drift_check(batch=batch) is None and batch.drift == {}
    for item in Item.objects.filter(project=project):
        ItemEmbedding.objects.create(
            item=item, project=project, vector=np.ones(DIM, "<f4").tobytes(), dim=DIM, source="t"
        )
    assert drift_pending_check(project=project) == 1
    assert IngestBatch.objects.get(pk=batch.pk).drift["status"] == "no_reference"


@pytest.mark.django_db
def test_ingest_api_shows_the_drift(admin_api, project):
    push(project, np.random.default_rng(3).normal(size=(30, 4)))
    IngestBatch.objects.filter(project=project).update(drift={"status": "done", "level": "warning", "psi_max": 0.2})
    response = admin_api.get(f"/api/v1/projects/{project.pk}/ingests")
    assert response.status_code == 200
    assert response.json()["results"][0]["drift"] == {"status": "done", "level": "warning", "psi_max": 0.2}
