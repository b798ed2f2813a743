"""The zero-shot prior from label names (acquisition.zeroshot) and its use by cold-start scoring runs:
label vectors with the hashing encoder, the data-adaptive temperature, suggestions until a model exists,
and the switch-off when the stored vectors are not the encoder's."""

import numpy as np
import pytest

from acquisition.encoders import get_encoder
from acquisition.models import ItemEmbedding, ScoringRun
from acquisition.services import scoring as compute
from acquisition.services.embedding import items_embed
from acquisition.zeroshot import ZeroShotPrior, label_text, label_words
from annotation import services
from annotation.models import EmbeddingState, Item, ItemStatus, LabelClass, LabelSource, QueueEntry, QueueReason
from annotation.services.ingest import PROVIDED
from annotation.services.projects import LabelSpec
from loop.services import scoring

ENCODER = "hashing:64"
CLASSES = {
    "card_arrival": ("", ["my card has not arrived", "when will the card arrive", "card arrival is late"]),
    "exchange_rate": ("", ["what exchange rate applies", "the exchange rate for euros", "a bad rate of exchange"]),
    "refund": ("asks for money back", ["I want a refund", "refund my money back", "money back refund please"]),
    "lost_or_stolen_phone": (
        "",
        ["my phone was stolen", "I lost my phone", "stolen phone, what now", "lost phone or stolen phone"],
    ),
}
FILLER = ["hello", "please help", "thanks", "urgent", "again", "today", "hi team", "quick question"]


def texts_of_classes(per_class=12, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for c, (_, phrases) in enumerate(CLASSES.values()):
        for i in range(per_class):
            words = [FILLER[j] for j in rng.choice(len(FILLER), size=2, replace=False)]
            rows.append((f"{words[0]} {phrases[i % len(phrases)]} {words[1]} {i}", c))
    return rows


# ----------------------------------------------------------------------------------------- numerics


def test_label_names_become_words():
    assert label_words("card_arrival") == "card arrival"
    assert label_words("cardArrival") == "card Arrival"
    assert label_words("lost-or-stolen.phone") == "lost or stolen phone"
    assert label_text("refund", "asks for  money back") == "refund: asks for money back"
    assert label_text("getting_spare_card", "") == "getting spare card"


def test_label_vectors_from_the_hashing_encoder_classify_items_sharing_their_words():
    encoder = get_encoder(ENCODER)
    rows = texts_of_classes()
    X = encoder.encode([text for text, _ in rows])
    y = np.array([c for _, c in rows])
    labels = encoder.encode([label_text(name, description) for name, (description, _) in CLASSES.items()])
    prior = ZeroShotPrior(labels).fit(X)
    assert np.mean(prior.predict(X) == y) >= 0.9
    p = prior.predict_proba(X)
    assert p.shape == (len(X), len(CLASSES)) and np.allclose(p.sum(1), 1.0)
    assert (prior.classes_ == np.arange(len(CLASSES))).all()


def test_temperature_is_data_adaptive():
    rng = np.random.default_rng(0)
    labels = np.eye(5, 32)
    y = rng.integers(0, 5, 400)
    X = labels[y] + rng.normal(scale=0.4, size=(400, 32))
    unsupervised = ZeroShotPrior(labels).fit(X)
    scores = unsupervised.decision_function(X)
    assert unsupervised.kappa_ == pytest.approx(1.0 / np.median(scores.std(axis=1)))
    # labels that agree with the argmax make it sharper; labels at random make it softer
    agree = ZeroShotPrior(labels).fit(X, unsupervised.predict(X))
    noise = ZeroShotPrior(labels).fit(X, rng.integers(0, 5, 400))
    assert agree.kappa_ > unsupervised.kappa_ > noise.kappa_ and agree.n_labelled_ == 400
    # the accuracy the prior expects of itself follows: the cold start trusts a sharp prior more
    assert 1.0 >= agree.reliability_ > unsupervised.reliability_ > noise.reliability_ >= 1 / 5
    # -1 marks an unknown class: no label, no change
    assert ZeroShotPrior(labels).fit(X, np.full(400, -1)).kappa_ == unsupervised.kappa_
    # the argmax does not depend on the temperature
    assert (agree.predict_proba(X).argmax(1) == noise.predict_proba(X).argmax(1)).all()
    assert ZeroShotPrior(labels, temperature=0.5).fit(X, y).kappa_ == 2.0


def test_a_few_labels_cannot_push_the_temperature_far():
    rng = np.random.default_rng(1)
    labels = np.eye(4, 16)
    X = labels[rng.integers(0, 4, 200)] + rng.normal(scale=0.5, size=(200, 16))
    base = ZeroShotPrior(labels).fit(X)
    y = np.full(200, -1)
    y[:2] = base.predict(X[:2])  # two agreeing labels alone would send κ to infinity
    few = ZeroShotPrior(labels).fit(X, y)
    assert base.kappa_ < few.kappa_ < base.kappa_ * np.exp(3)


# ----------------------------------------------------------------------------------------- scoring runs


@pytest.fixture(autouse=True)
def cache_dir(settings, tmp_path):
    settings.QUORUM_CACHE_DIR = tmp_path / "cache"


@pytest.fixture
def named(admin_user):
    """A hashing-encoder project whose labels have names (one with a description) and 48 items whose texts
    use their words, embedded by the embedding service (so every vector's source is the encoder)."""
    labels = [LabelSpec(name, description=description or None) for name, (description, _) in CLASSES.items()]
    project = services.project_create(
        user=admin_user,
        name="Named",
        labels=labels,
        encoder=ENCODER,
        embedding_dim=64,
        batch_size=8,
        exploration_fraction=0.25,
    )
    rows = texts_of_classes()
    items = Item.objects.bulk_create(
        [Item(project=project, external_id=f"t{i}", text=text, text_hash=f"h{i}") for i, (text, _) in enumerate(rows)]
    )
    project.class_of = {item.pk: c for item, (_, c) in zip(items, rows, strict=True)}
    project.label_pks = list(
        LabelClass.objects.filter(project=project).order_by("order", "pk").values_list("pk", flat=True)
    )
    return project


def run_scoring(project, seed=5):
    run = compute.scoring_run_create(project=project, trigger="test")
    scoring.scoring_run_execute(run.pk, seed=seed)
    run.refresh_from_db()
    assert run.status == ScoringRun.Status.SUCCEEDED, run.error
    return run


def test_first_run_uses_the_typical_cold_start_and_suggests_from_label_names(named):
    assert items_embed(project=named).embedded == 48
    run = run_scoring(named)

    assert run.model_version is None
    assert run.timings["cold_start"] == "typiclust" and run.timings["zero_shot"] == "on"
    entries = list(QueueEntry.objects.filter(project=named))
    cold = [e for e in entries if e.reason == QueueReason.COLD_START]
    assert len(entries) == 8 and len(cold) == 6
    assert {named.class_of[e.item_id] for e in cold} == {0, 1, 2, 3}  # every class in the first batch
    # every entry, exploration included, carries the prior's suggestion, right for these texts
    assert all(e.suggested_label_id is not None and 0 < e.suggested_confidence <= 1 for e in entries)
    right = [e.suggested_label_id == named.label_pks[named.class_of[e.item_id]] for e in entries]
    assert np.mean(right) >= 0.85


def test_labelled_items_cover_their_classes_in_the_next_cold_batch(named):
    items_embed(project=named)
    refund = [pk for pk, c in named.class_of.items() if c == 2][:2]
    Item.objects.filter(pk__in=refund).update(
        final_label_id=named.label_pks[2], final_source=LabelSource.CONSENSUS, status=ItemStatus.FINALIZED
    )
    named.batch_size, named.exploration_fraction = 3, 0.0
    named.save(update_fields=["batch_size", "exploration_fraction"])
    run = run_scoring(named)

    cold = QueueEntry.objects.filter(project=named, reason=QueueReason.COLD_START)
    assert sorted(named.class_of[e.item_id] for e in cold) == [0, 1, 3]  # not refund again
    assert run.timings["zero_shot"] == "on" and run.timings["zero_shot_temperature"] > 0


def test_pushed_vectors_of_an_unknown_model_switch_the_prior_off(named):
    rng = np.random.default_rng(0)
    items = list(Item.objects.filter(project=named))
    vectors = rng.normal(size=(len(items), 64)).astype("<f4")
    ItemEmbedding.objects.bulk_create(
        [
            ItemEmbedding(item=item, project=named, vector=vectors[i].tobytes(), dim=64, source=PROVIDED)
            for i, item in enumerate(items)
        ]
    )
    Item.objects.filter(project=named).update(embedding_state=EmbeddingState.READY)
    run = run_scoring(named)

    assert run.timings["zero_shot"].startswith("off: the pushed vectors are not")
    entries = QueueEntry.objects.filter(project=named)
    assert entries.filter(reason=QueueReason.COLD_START).count() == 6
    assert all(e.suggested_label_id is None and e.suggested_confidence is None for e in entries)


def test_pushed_vectors_of_the_encoder_itself_keep_the_prior(named):
    items = list(Item.objects.filter(project=named).order_by("pk"))
    vectors = get_encoder(ENCODER).encode([item.text for item in items]).astype("<f4")
    ItemEmbedding.objects.bulk_create(
        [
            ItemEmbedding(item=item, project=named, vector=vectors[i].tobytes(), dim=64, source=PROVIDED)
            for i, item in enumerate(items)
        ]
    )
    Item.objects.filter(project=named).update(embedding_state=EmbeddingState.READY)
    run = run_scoring(named)

    assert run.timings["zero_shot"] == "on"
    assert all(e.suggested_label_id is not None for e in QueueEntry.objects.filter(project=named))


def test_a_project_whose_encoder_is_not_the_vectors_has_no_prior(named):
    named.encoder = "hashing:32"  # vectors of 64 dimensions cannot come from it
    named.save(update_fields=["encoder"])
    items = list(Item.objects.filter(project=named))
    ItemEmbedding.objects.bulk_create(
        [
            ItemEmbedding(item=item, project=named, vector=np.ones(64, "<f4").tobytes(), dim=64, source=PROVIDED)
            for item in items
        ]
    )
    Item.objects.filter(project=named).update(embedding_state=EmbeddingState.READY)
    run = run_scoring(named)
    assert run.timings["zero_shot"].startswith("off: the vectors are not those of a known text encoder")
