"""Fine-tuning the encoder with a head (the real all-MiniLM-L6-v2, on the CPU here; the same code runs on
CUDA workers): the estimator alone, then a training job of a ``finetune`` project end to end."""

import numpy as np
import pytest

from acquisition import tasks
from acquisition.encoders import get_encoder
from acquisition.finetune import FineTunedClassifier, finetunable
from acquisition.models import ItemEmbedding, ModelVersion
from acquisition.services import loop, scoring, training
from annotation.models import EmbeddingState, Item, ItemStatus, LabelSource, QueueEntry

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


@pytest.mark.django_db
def test_a_finetune_job_trains_the_encoder_and_scores_from_texts(make_project, settings, tmp_path, monkeypatch):
    settings.QUORUM_CACHE_DIR = tmp_path / "cache"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.QUORUM_FINETUNE_ON_CPU = True
    settings.QUORUM_FINETUNE_EPOCHS = 1
    sent = []
    monkeypatch.setattr(tasks.scoring_run_execute, "apply_async", lambda args, queue=None: sent.append(queue))
    monkeypatch.setattr(tasks.scoring_run_execute, "delay", lambda run_id: sent.append("default"))
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

    job = loop.training_job_request(project=project, trigger="manual")
    loop.training_job_execute(job.pk)
    job.refresh_from_db()
    version = job.model_version

    assert job.status == "succeeded" and job.outcome == "promoted", job.error
    assert version.kind == "finetune" and version.status == ModelVersion.Status.CURRENT
    assert version.hyperparameters["base"] == MINILM and version.hyperparameters["epochs"] == 1
    assert version.decision == "first model of the project"
    model = training.model_load(version)
    assert isinstance(model, FineTunedClassifier)
    # the pool was re-scored from the items' texts by the fine-tuned model, with its suggestions
    run = job.scoring_run
    assert run.status == "succeeded" and run.model_version_id == version.pk
    entries = QueueEntry.objects.filter(project=project, run=run)
    assert entries.count() == 6 and not entries.filter(suggested_label__isnull=True).exists()
    # later scoring runs of this project go to the gpu queue (they run the encoder)
    assert scoring.scoring_queue(project) == settings.CELERY_GPU_QUEUE
    scoring._enqueue(run.pk)
    assert sent == ["gpu"]
