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


SCALES = np.array([3.0, 2.0, 1.5, 1.0, 1.0, 1.0, 1.0, 1.0])  # distinct principal directions


def pool_rows(rng, n, shift=0.0):
    rows = rng.normal(size=(n, DIM)) * SCALES
    rows[:, 0] += shift
    return rows


def checked(report):
    ingest_batch_process(report.batch_id)
    return IngestBatch.objects.get(pk=report.batch_id).drift


@pytest.mark.django_db
def test_pushed_pools_are_checked_against_the_pool_before_them(make_project, settings, tmp_path):
    settings.QUORUM_CACHE_DIR = tmp_path
    project = make_project("Drifting", embedding_dim=DIM)
    rng = np.random.default_rng(2)
    assert checked(push(project, pool_rows(rng, 1500)))["status"] == "no_reference"  # nothing before it

    similar = checked(push(project, pool_rows(rng, 1000), offset=10_000))
    assert similar["status"] == "done" and similar["level"] == "ok" and similar["reference"] == "pool"
    assert similar["n_reference"] == 1500 and similar["n_new"] == 1000
    shifted = checked(push(project, pool_rows(rng, 1000, shift=6.0), offset=20_000))
    assert shifted["level"] == "critical" and shifted["n_reference"] == 2500

    settings.QUORUM_DRIFT_SAMPLE = 400  # a fixed-size random sample of the pool, the push's own items left out
    again = checked(push(project, pool_rows(rng, 300), offset=30_000))
    assert again["n_reference"] == 400 and again["n_new"] == 300


@pytest.mark.django_db
def test_more_rows_of_the_same_data_are_no_drift_whatever_the_model_trained_on(make_project, settings, tmp_path):
    """The model's training items are the strategy's picks (here: the items nearest its boundary,
    x0 ≈ 0), unlike the pool; 200 more rows of the same data used to read critical against them."""
    settings.QUORUM_CACHE_DIR = tmp_path
    project = make_project("Chosen", embedding_dim=DIM)
    rng = np.random.default_rng(7)
    rows = pool_rows(rng, 2000)
    checked(push(project, rows))
    ids = np.array(Item.objects.filter(project=project).order_by("pk").values_list("pk", flat=True))
    chosen = ids[np.argsort(np.abs(rows[:, 0]))[:300]]  # uncertainty sampling's picks
    Item.objects.filter(pk__in=chosen.tolist()).update(
        final_label=project.labels.first(), final_source=LabelSource.CONSENSUS, status=ItemStatus.FINALIZED
    )
    from django.utils import timezone

    ModelVersion.objects.create(project=project, version=1, status="current", labels_as_of=timezone.now())

    same = checked(push(project, pool_rows(rng, 200), offset=10_000))
    assert same["status"] == "done" and same["level"] == "ok", same["psi_max"]
    moved = checked(push(project, pool_rows(rng, 200, shift=4.5), offset=20_000))
    assert moved["level"] in ("warning", "critical") and moved["psi_max"] > 0.25


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
