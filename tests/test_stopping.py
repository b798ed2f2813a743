"""The stopping signal: kappa between models' predictions, the stop set, the held-out gain with its
noise floor, the rule (stable predictions stop; a rising curve or changing predictions do not; too
few versions are no evidence), the service that stores a version's stability after its training job,
and the dashboard that shows the signal with its evidence."""

import numpy as np
import pytest
from django.utils import timezone
from sklearn.metrics import cohen_kappa_score

from acquisition import curves
from acquisition.models import ModelVersion, TrainingJob
from acquisition.services import fitting
from acquisition.services.gate import model_gate
from acquisition.services.stopping import stop_set_items, version_stability
from annotation.models import Item, ItemStatus, LabelSource
from loop.services import training

from .pools import cluster_pool


# ------------------------------------------------------------------------------ kappa, stop set
def test_kappa_of_two_models_predictions():
    # the worked example of DESIGN.md: n11=40, n10=10, n01=5, n00=45 gives 0.70
    a = np.array([1] * 40 + [1] * 10 + [0] * 5 + [0] * 45)
    b = np.array([1] * 40 + [0] * 10 + [1] * 5 + [0] * 45)
    result = curves.prediction_agreement(a, b)
    assert result["kappa"] == pytest.approx(0.70) and result["agreement"] == pytest.approx(0.85) and result["n"] == 100
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 7, 500), rng.integers(0, 7, 500)
    y[:300] = x[:300]
    assert curves.prediction_agreement(x, y)["kappa"] == pytest.approx(cohen_kappa_score(x, y))
    # identical predictions agree perfectly, even when one class is all they predict (p_e = 1)
    assert curves.prediction_agreement([2, 2, 2], [2, 2, 2])["kappa"] == 1.0
    assert curves.prediction_agreement([], [])["kappa"] is None
    with pytest.raises(ValueError):
        curves.prediction_agreement([1, 2], [1])


def test_stop_set_is_chosen_once_per_seed():
    ids = np.arange(10, 5010)
    chosen = curves.stop_set(ids, seed=7, size=200)
    assert len(chosen) == 200 and np.all(np.diff(chosen) > 0) and np.isin(chosen, ids).all()
    assert np.array_equal(chosen, curves.stop_set(ids[::-1], seed=7, size=200))  # order of the ids does not matter
    assert not np.array_equal(chosen, curves.stop_set(ids, seed=8, size=200))
    # a new item displaces at most one member; a small pool is taken whole
    grown = curves.stop_set(np.append(ids, 99_999), seed=7, size=200)
    assert len(np.setdiff1d(chosen, grown)) <= 1
    assert np.array_equal(curves.stop_set([5, 3, 4], seed=7, size=200), [3, 4, 5])


def test_the_reference_is_the_newest_version_a_horizon_back():
    earlier = [(1, 100), (2, 300), (3, 550), (4, 600), (5, 900)]
    assert curves.stability_reference(earlier, 1100, horizon=500) == 4  # 600 ≤ 1100 − 500
    assert curves.stability_reference(earlier, 1000, horizon=500) == 2  # 550 and 600 are too recent
    assert curves.stability_reference(earlier, 2300, horizon=500) is None  # 900 is more than 1000 back
    assert curves.stability_reference(earlier, 500, horizon=500) is None
    assert curves.stability_threshold(500) == pytest.approx(0.99)
    assert curves.stability_threshold(600) == pytest.approx(0.988)


# ---------------------------------------------------------------------------- held-out gain
def _curve(gain_per_100, n_eval, *, start=1000, stop=2100, step=50, base=0.8, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return [
        {
            "labels": n,
            "version": i + 1,
            "accuracy": base + gain_per_100 * (n - start) / 100 + noise * rng.standard_normal(),
            "n_eval": n_eval,
        }
        for i, n in enumerate(range(start, stop, step))
    ]


def test_held_out_gain_and_its_noise_floor():
    gain = curves.held_out_gain(_curve(0.01, 300))
    assert gain["per_100"] == pytest.approx(0.01)
    assert gain["se"] == pytest.approx(gain["noise_floor"])  # points on the line: the binomial floor
    assert gain["to_labels"] == 2050 and gain["from_labels"] == 1550 and gain["points"] == 11
    # a held-out set four times larger halves the floor: the test size sets the noise
    assert curves.held_out_gain(_curve(0.01, 1200))["noise_floor"] == pytest.approx(gain["noise_floor"] / 2, rel=0.05)
    # scatter beyond the binomial noise widens the error
    noisy = curves.held_out_gain(_curve(0.01, 300, noise=0.05))
    assert noisy["se"] > noisy["noise_floor"]
    # never from points a few labels apart
    assert curves.held_out_gain(_curve(0.01, 300, start=1000, stop=1400)) is None
    assert curves.held_out_gain([{**p, "n_eval": 0} for p in _curve(0.01, 300)]) is None


# ------------------------------------------------------------------------------------- the rule
def _with_stability(curve, kappas):
    """The last ``len(kappas)`` versions compared with the version 500 labels before them."""
    out = [dict(p) for p in curve]
    for point, kappa in zip(out[-len(kappas) :], kappas, strict=True):
        point["stability"] = {"kappa": kappa, "span": 500, "reference_version": point["version"] - 10}
    return out


def test_stable_predictions_stop():
    history = _with_stability(_curve(0.0005, 300), [0.993, 0.995, 0.996])
    signal = curves.stopping_rule(history)
    assert signal["state"] == "stop" and signal["stop"]
    assert [s["stable"] for s in signal["stability"]] == [True, True, True]
    assert signal["stability"][-1]["threshold"] == pytest.approx(0.99)
    assert signal["gain"]["per_100"] == pytest.approx(0.0005)


def test_a_curve_still_rising_does_not_stop():
    # predictions look stable, but held-out accuracy rises 2 points per 100 labels, far above its noise
    rising = curves.stopping_rule(_with_stability(_curve(0.02, 300), [0.995, 0.995, 0.995]))
    assert rising["state"] == "go" and rising["pays"] and not rising["stop"]
    assert rising["gain"]["low"] > rising["threshold_per_100"]
    # predictions still changing: no stop either, whatever the (flat) held-out curve says
    changing = curves.stopping_rule(_with_stability(_curve(0.0, 300), [0.995, 0.97, 0.995]))
    assert changing["state"] == "go" and not changing["pays"]
    assert [s["stable"] for s in changing["stability"]] == [True, False, True]


def test_too_few_versions_are_no_evidence():
    assert curves.stopping_rule([])["state"] == "no_evidence"
    curve = _curve(0.0, 300)
    assert curves.stopping_rule(_with_stability(curve[:2], [0.999, 0.999]))["state"] == "no_evidence"
    # the newest version has no comparison yet (no model 500 labels before it, or its check failed)
    two_of_three = _with_stability(curve, [0.999, 0.999, 0.999])
    two_of_three[-1]["stability"] = {"status": "failed", "error": "x"}
    assert curves.stopping_rule(two_of_three)["state"] == "no_evidence"
    # three comparisons but no held-out set: the stop rests on the predictions alone
    blind = [{**p, "accuracy": None, "n_eval": 0} for p in _with_stability(curve, [0.999, 0.999, 0.999])]
    signal = curves.stopping_rule(blind)
    assert signal["state"] == "stop" and signal["gain"] is None


# ---------------------------------------------------------------------------------- the service
DIM = 8
PER_CLUSTER = 60


@pytest.fixture
def pool(make_project, settings, tmp_path):
    """Three separable clusters of 60 items in 8-d, one per label."""
    settings.QUORUM_CACHE_DIR = tmp_path / "cache"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.QUORUM_LABEL_ERROR_CAP = 0
    project = make_project("Stop", labels=("a", "b", "c"), embedding_dim=DIM, batch_size=12, retrain_after=30)
    cluster_pool(project, per_cluster=PER_CLUSTER, dim=DIM, scale=0.7)
    return project


def label(project, per_cluster, start=0):
    names = list(project.labels.order_by("order", "pk"))
    for c in range(3):
        Item.objects.filter(pk__in=project.by_cluster[c][start : start + per_cluster]).update(
            final_label=names[c],
            final_confidence=1.0,
            final_source=LabelSource.CONSENSUS,
            status=ItemStatus.FINALIZED,
            finalized_at=timezone.now(),
        )


def train(project):
    return model_gate(version=fitting.model_fit(project=project))


@pytest.mark.django_db
def test_stability_is_stored_on_the_version(pool):
    ids, vectors = stop_set_items(pool)
    assert len(ids) == 3 * PER_CLUSTER and vectors.shape == (len(ids), DIM)  # a small pool is taken whole
    label(pool, 2)
    first = train(pool)
    record = version_stability(version=first, horizon=20)
    assert record["status"] == "done" and record["kappa"] is None and "previous_version" not in record
    label(pool, 10, start=2)  # +30 labels
    second = train(pool)
    label(pool, 10, start=12)  # +30 labels
    third = train(pool)
    record = version_stability(version=third, horizon=20)
    third.refresh_from_db()
    assert third.metrics["stability"] == record
    # the newest version at least 20 labels back is the second one (30 back), the one before it too
    assert record["reference_version"] == second.version and record["span"] == 30
    assert record["previous_version"] == second.version and record["previous_kappa"] == record["kappa"]
    assert record["n"] == record["stop_set"] == 3 * PER_CLUSTER
    # separable clusters: the models agree on nearly everything, and kappa is what the pure function says
    assert 0.9 <= record["kappa"] <= 1.0 and record["agreement"] >= 0.95
    # the third version against the first one: 60 labels back with a 40-label horizon
    assert version_stability(version=third, horizon=40)["reference_version"] == first.version
    assert third.metrics["eval"]  # the fit's metrics stay beside it


@pytest.mark.django_db
def test_training_job_records_stability_and_survives_its_failure(pool):
    label(pool, 10)
    job = training.training_job_request(project=pool, trigger="manual")
    training.training_job_execute(job.pk)
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.SUCCEEDED and job.timings["stability"]["status"] == "done"
    version = ModelVersion.objects.get(project=pool, version=1)
    assert version.metrics["stability"]["stop_set"] == 3 * PER_CLUSTER
    # the previous version's label list no longer matches its model: the check fails, the job still
    # succeeds and says why
    ModelVersion.objects.filter(pk=version.pk).update(label_names=[])
    label(pool, 10, start=10)
    job = training.training_job_request(project=pool, trigger="manual")
    training.training_job_execute(job.pk)
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.SUCCEEDED
    assert job.timings["stability"]["status"] == "failed" and job.timings["stability"]["error"]
    assert "stability" not in ModelVersion.objects.get(project=pool, version=2).metrics


# -------------------------------------------------------------------------------- the dashboard
def _versions(project, kappas):
    for i, n in enumerate(range(1000, 2100, 50)):
        stable = i >= 22 - len(kappas)
        ModelVersion.objects.create(
            project=project,
            version=i + 1,
            status="current" if i == 21 else "retired",
            label_names=["x", "y"],
            n_labels=n,
            n_eval=300,
            metrics={
                "eval": {"accuracy": 0.85 + 0.00001 * i, "macro_f1": 0.8},
                **(
                    {"stability": {"kappa": kappas[i - 22 + len(kappas)], "span": 500, "reference_version": i - 9}}
                    if stable
                    else {}
                ),
            },
        )


@pytest.mark.django_db
def test_dashboard_shows_the_stop_with_its_evidence(project, admin_user, client_for):
    _versions(project, [0.9931, 0.9952, 0.9968])
    page = client_for(admin_user).get(f"/projects/{project.pk}/dashboard").content.decode()
    assert 'data-testid="stopping" data-state="stop"' in page and "More labels have stopped paying" in page
    assert page.count('data-testid="stability-kappa"') == 3
    assert "v20 (1950 labels) κ 0.993 against v10, 500 labels earlier (threshold 0.990) ✓" in page
    assert 'data-testid="stopping-gain"' in page and "held-out labels" in page


@pytest.mark.django_db
def test_dashboard_says_when_there_is_not_enough_evidence(project, admin_user, client_for):
    _versions(project, [0.9952])
    page = client_for(admin_user).get(f"/projects/{project.pk}/dashboard").content.decode()
    assert 'data-state="no_evidence"' in page and "Not enough evidence yet" in page
    assert "More labels have stopped paying" not in page
