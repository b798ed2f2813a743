"""Fine-tuning the encoder with a head (the real all-MiniLM-L6-v2, on the CPU here; the same code runs on
CUDA workers): the estimator alone, then a training job of a ``finetune`` project end to end."""

import io

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from acquisition.finetune import FineTunedClassifier, finetunable

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TEMPLATES = {
    "refund": ["please refund order {i}", "I want my money back for purchase {i}", "return item {i} and pay me back"],
    "card_lost": ["my card {i} was lost", "someone stole my card {i}", "block card {i} it is missing"],
    "opening_hours": ["when do you open on day {i}", "branch hours for day {i}", "are you open at {i} o'clock"],
}


def corpus(n_per_template):
    texts, labels = [], []
    for c, templates in enumerate(TEMPLATES.values()):
        for template in templates:
            for i in range(n_per_template):
                texts.append(template.format(i=i))
                labels.append(c)
    return texts, np.array(labels)


def test_only_sentence_transformers_encoders_can_be_fine_tuned():
    assert finetunable(MINILM) and not finetunable("hashing:64") and not finetunable("/no/such/model")


def test_fit_predict_score_and_round_trip():
    texts, y = corpus(3)
    model = FineTunedClassifier(MINILM, epochs=2, random_state=0).fit(texts, y, n_classes=3)
    test = ["give me a refund for order 77", "my card went missing yesterday", "what are your hours on friday"]
    proba = model.predict_proba(test)
    assert proba.shape == (3, 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert (proba.argmax(1) == [0, 1, 2]).all()
    assert model.losses_[-1] < model.losses_[0]
    assert model.score(test, "margin").shape == (3,)
    members = model.predict_proba_members(test)
    assert members.shape == (model.mc_samples, 3, 3)
    assert model.score(test, "bald").min() >= 0
    again = FineTunedClassifier.from_state_dict(model.state_dict())
    np.testing.assert_allclose(again.predict_proba(test), proba, atol=1e-6)
    # the legacy n_classes= is classes=np.arange(n_classes); outputs are NumPy, never tensors
    np.testing.assert_array_equal(model.classes_, np.arange(3))
    assert model.predict(test).tolist() == [0, 1, 2]
    assert type(proba) is np.ndarray and proba.dtype == np.float32
    assert type(members) is np.ndarray and members.dtype == np.float32
    for strategy in ("least_confidence", "margin", "entropy", "bald", "qbc"):
        assert type(model.score(test, strategy)) is np.ndarray
    # a state saved before classes_ existed (no "classes" entry) loads with np.arange(n_classes)
    state = model.state_dict()
    assert state["classes"] == [0, 1, 2]
    del state["classes"]
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    legacy = FineTunedClassifier.from_state_dict(torch.load(buf, weights_only=True))
    np.testing.assert_array_equal(legacy.classes_, np.arange(3))
    np.testing.assert_allclose(legacy.predict_proba(test), proba, atol=1e-6)


def test_classes_from_y_and_an_unseen_explicit_class():
    texts, y = corpus(2)
    codes = np.array([30, 10, 20])[y]  # refund=30, card_lost=10, opening_hours=20
    test = ["give me a refund for order 77", "my card went missing yesterday", "what are your hours on friday"]
    model = FineTunedClassifier(MINILM, epochs=1, random_state=0).fit(texts, codes)
    np.testing.assert_array_equal(model.classes_, [10, 20, 30])
    proba = model.predict_proba(test)
    assert proba.shape == (3, 3)
    assert set(model.predict(test).tolist()) <= {10, 20, 30}
    np.testing.assert_array_equal(model.predict(test), model.classes_[proba.argmax(1)])
    assert model.predict_proba_members(test).shape == (model.mc_samples, 3, 3)

    wider = FineTunedClassifier(MINILM, epochs=1, random_state=0).fit(texts, codes, classes=[10, 20, 30, 40])
    np.testing.assert_array_equal(wider.classes_, [10, 20, 30, 40])
    p = wider.predict_proba(test)
    assert p.shape == (3, 4) and p[:, 3].max() < 0.2
    assert 40 not in wider.predict(test).tolist()
    buf = io.BytesIO()
    torch.save(wider.state_dict(), buf)
    buf.seek(0)
    again = FineTunedClassifier.from_state_dict(torch.load(buf, weights_only=True))
    np.testing.assert_array_equal(again.classes_, [10, 20, 30, 40])
    np.testing.assert_allclose(again.predict_proba(test), p, atol=1e-6)
    with pytest.raises(ValueError, match="not in classes"):
        FineTunedClassifier(MINILM, epochs=1).fit(texts, codes, classes=[10, 20])


def test_scikit_learn_params_and_clone():
    model = FineTunedClassifier(MINILM, epochs=1, lr=1e-4, mc_samples=2)
    params = model.get_params()
    assert set(params) == {
        "base", "epochs", "lr", "head_lr", "batch_size", "max_length", "weight_decay", "mc_samples",
        "random_state", "device",
    }  # fmt: skip
    copy = clone(model)
    assert type(copy) is FineTunedClassifier and copy is not model and copy.get_params() == params
    other = FineTunedClassifier()
    assert other.set_params(**params) is other and other.get_params() == params
    assert repr(model) == "FineTunedClassifier(epochs=1, lr=0.0001, mc_samples=2)"
    with pytest.raises(ValueError):
        other.set_params(no_such_parameter=1)
    with pytest.raises(NotFittedError):
        copy.predict_proba(["text"])
    assert not hasattr(copy, "head_") and not hasattr(copy, "classes_")


@pytest.mark.django_db
def test_a_finetune_job_trains_the_encoder_and_scores_from_texts(
    make_project, settings, tmp_path, monkeypatch, django_capture_on_commit_callbacks
):
    # imported here so that the estimator tests above do not depend on the Django app
    from acquisition.encoders import get_encoder
    from acquisition.models import ItemEmbedding, ModelVersion
    from acquisition.services import registry
    from annotation.models import EmbeddingState, Item, ItemStatus, LabelSource, QueueEntry
    from loop import tasks
    from loop.services import scoring, training

    settings.QUORUM_CACHE_DIR = tmp_path / "cache"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.QUORUM_FINETUNE_ON_CPU = True
    settings.QUORUM_FINETUNE_EPOCHS = 1
    sent = []
    monkeypatch.setattr(
        tasks.scoring_run_execute,
        "apply_async",
        lambda args=None, kwargs=None, **options: sent.append(options.get("queue", "default")),
    )
    project = make_project(
        "Tuned",
        labels=tuple(TEMPLATES),
        encoder=MINILM,
        embedding_dim=384,
        training_mode="finetune",
        batch_size=6,
        exploration_fraction=0.0,
    )
    texts, y = corpus(6)
    vectors = get_encoder(MINILM, device="cpu").encode(texts)  # the real encoder, as the embed task uses it
    items = Item.objects.bulk_create(
        [Item(project=project, external_id=f"t{i}", text=t, text_hash=f"h{i}") for i, t in enumerate(texts)]
    )
    ItemEmbedding.objects.bulk_create(
        [
            ItemEmbedding(item=item, project=project, vector=vectors[i].astype("<f4").tobytes(), dim=384, source=MINILM)
            for i, item in enumerate(items)
        ]
    )
    Item.objects.filter(project=project).update(embedding_state=EmbeddingState.READY)
    labels = list(project.labels.order_by("order", "pk"))
    for i, item in enumerate(items[::2]):  # half the pool labelled
        Item.objects.filter(pk=item.pk).update(
            final_label=labels[int(y[2 * i])],
            final_confidence=1.0,
            final_source=LabelSource.CONSENSUS,
            status=ItemStatus.FINALIZED,
        )

    job = training.training_job_request(project=project, trigger="manual")
    training.training_job_execute(job.pk)
    job.refresh_from_db()
    version = job.model_version

    assert job.status == "succeeded" and job.outcome == "promoted", job.error
    assert version.kind == "finetune" and version.status == ModelVersion.Status.CURRENT
    assert version.hyperparameters["base"] == MINILM and version.hyperparameters["epochs"] == 1
    assert version.decision == "first model of the project"
    model = registry.model_load(version)
    assert isinstance(model, FineTunedClassifier)
    # the pool was re-scored from the items' texts by the fine-tuned model, with its suggestions
    run = job.scoring_run
    assert run.status == "succeeded" and run.model_version_id == version.pk
    entries = QueueEntry.objects.filter(project=project, run=run)
    assert entries.count() == 6 and not entries.filter(suggested_label__isnull=True).exists()
    # later scoring runs of this project go to the gpu queue (they run the encoder)
    assert scoring.scoring_queue(project) == settings.CELERY_GPU_QUEUE
    with django_capture_on_commit_callbacks(execute=True):
        assert scoring.scoring_request(project=project, trigger="test") is not None
    assert sent == ["gpu"]
