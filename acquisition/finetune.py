"""A sentence encoder fine-tuned together with a linear classification head (no Django).

``FineTunedClassifier`` is a scikit-learn estimator (``sklearn.base.BaseEstimator``) with the API of
``HeadCommittee`` but reads texts instead of stored embeddings: ``fit(texts, y, classes=None,
sample_weight=w)`` (``classes_`` = ``np.unique(y)`` or the given ``classes``; ``n_classes=C`` is short
for ``classes=np.arange(C)``), ``predict(texts)`` (values of ``classes_``), ``predict_proba(texts)`` and
``predict_proba_members(texts)`` (columns in the order of ``classes_``), ``score(texts, strategy)``,
``state_dict`` / ``from_state_dict``. Everything returned is NumPy. Not a ``ClassifierMixin``: its
``score(texts, strategy)`` is the acquisition score, not scikit-learn's accuracy.

Model: ``p(c|x) = softmax(W · e(x) + b)_c`` where ``e`` is the sentence-transformers encoder (for
all-MiniLM-L6-v2: transformer, mean pooling, L2 normalisation) and every weight of ``e``, ``W`` and
``b`` is trained. Loss: the sample-weighted cross-entropy ``Σ_i w_i · (−log p(y_i|x_i)) / Σ_i w_i``,
AdamW (``lr`` for the encoder, ``head_lr`` for the head, decoupled weight decay), a linear warm-up
over the first 10% of steps then a linear decay; bfloat16 autocast on CUDA. Deterministic for a
``random_state`` on the CPU (CUDA kernels may differ in the last bits).

Committee strategies (BALD, QBC) use ``mc_samples`` forward passes with the encoder's dropout on,
each pass seeded (MC dropout); the other strategies use the deterministic mean prediction.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from .committee import HeadCommittee, _fit_classes, _state_classes
from .encoders import MINILM_NAMES, _quiet_transformers, _set_offline_env, minilm_path
from .strategies import SCORE_FUNCTIONS

__all__ = ["FineTunedClassifier", "finetunable"]


def _base_path(name: str) -> Path:
    """The local folder of a sentence-transformers encoder name (the packaged MiniLM or a folder)."""
    if name in MINILM_NAMES:
        return minilm_path()
    path = Path(name).expanduser()
    if (path / "modules.json").exists() or (path / "config.json").exists():
        return path
    raise ValueError(f"encoder {name!r} is not a sentence-transformers model that can be fine-tuned")


def finetunable(name: str) -> bool:
    try:
        _base_path(name)
    except (ValueError, RuntimeError):
        return False
    return True


class FineTunedClassifier(BaseEstimator):
    """A sentence-transformers encoder ``base`` fine-tuned with a linear head (module docstring).

    ``epochs`` passes over the labels in mini-batches of ``batch_size`` texts (cut at ``max_length``
    tokens); AdamW with ``lr`` for the encoder, ``head_lr`` for the head and ``weight_decay``;
    ``mc_samples`` MC-dropout passes for ``predict_proba_members``; ``random_state`` seeds everything;
    ``device``: ``"cpu"`` or ``"cuda[:i]"``.

    Learned attributes: ``classes_``, ``n_classes_``, ``encoder_`` (the fine-tuned encoder), ``head_``
    (a ``torch.nn.Linear``), ``losses_`` (the training loss of every step).
    """

    input_kind = "texts"  # what ``predict_proba`` and ``score`` take (``HeadCommittee`` takes vectors)

    def __init__(
        self,
        base: str = "sentence-transformers/all-MiniLM-L6-v2",
        epochs: int = 3,
        lr: float = 3e-5,
        head_lr: float = 1e-2,
        batch_size: int = 32,
        max_length: int = 128,
        weight_decay: float = 0.01,
        mc_samples: int = 8,
        random_state: int = 0,
        device: str = "cpu",
    ):
        self.base = base
        self.epochs = epochs
        self.lr = lr
        self.head_lr = head_lr
        self.batch_size = batch_size
        self.max_length = max_length
        self.weight_decay = weight_decay
        self.mc_samples = mc_samples
        self.random_state = random_state
        self.device = device

    # ------------------------------------------------------------------------------- building
    def _load_encoder(self):
        from sentence_transformers import SentenceTransformer

        _set_offline_env()
        _quiet_transformers()
        model = SentenceTransformer(str(_base_path(self.base)), device=str(self.device), local_files_only=True)
        model.max_seq_length = min(model.max_seq_length or self.max_length, self.max_length)
        return model

    def _features(self, texts: list[str]) -> dict:
        model = self.encoder_
        features = model.preprocess(texts) if hasattr(model, "preprocess") else model.tokenize(texts)
        return {k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in features.items()}

    def _logits(self, texts: list[str]) -> torch.Tensor:
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if str(self.device).startswith("cuda") else _null()
        with autocast:
            emb = self.encoder_(self._features(texts))["sentence_embedding"]
        return self.head_(emb.float())

    # ------------------------------------------------------------------------------------ fit
    def _linear_probe(self, texts: list[str], y: np.ndarray, w: np.ndarray) -> torch.nn.Linear:
        """The head, started from a logistic regression on the frozen embeddings (linear probing, then
        fine-tuning: the encoder is not pulled around by a random head in the first steps)."""
        self.encoder_.eval()
        with torch.inference_mode():
            X = np.concatenate(
                [
                    self.encoder_(self._features(chunk))["sentence_embedding"].float().cpu().numpy()
                    for _, chunk in self._batches(texts)
                ]
            )
        order = np.concatenate([idx for idx, _ in self._batches(texts)])
        frozen = np.empty_like(X)
        frozen[order] = X
        probe = HeadCommittee(n_members=1, bootstrap=False, weight_decay=0.1, random_state=self.random_state)
        probe.fit(frozen, y, classes=np.arange(self.n_classes_), sample_weight=w)
        head = torch.nn.Linear(frozen.shape[1], self.n_classes_)
        with torch.no_grad():
            head.weight.copy_(probe.weights_["W"].T.float())
            head.bias.copy_(probe.weights_["b"].reshape(-1).float())
        return head.to(self.device)

    def fit(self, texts, y, *, classes=None, sample_weight=None, n_classes: int | None = None) -> FineTunedClassifier:
        """Fine-tune on ``texts`` and their labels ``y``. ``classes``: the label set, ``classes_`` (default
        ``np.unique(y)``); every value of ``y`` must be in it, classes absent from ``y`` still get a
        column. ``n_classes=C`` (legacy) is short for ``classes=np.arange(C)``."""
        texts = [str(t) for t in texts]
        y = np.asarray(y)
        n = len(texts)
        if n == 0 or y.shape != (n,):
            raise ValueError("fit needs as many labels as texts, and at least one")
        classes_, y = _fit_classes(y, classes, n_classes)
        w = np.ones(n, dtype=np.float32) if sample_weight is None else np.asarray(sample_weight, dtype=np.float32)
        torch.manual_seed(self.random_state)
        rng = np.random.default_rng(self.random_state)
        self.encoder_ = self._load_encoder()
        self.classes_ = classes_
        self.n_classes_ = len(classes_)
        self.head_ = self._linear_probe(texts, y, w)
        optimiser = torch.optim.AdamW(
            [
                {"params": self.encoder_.parameters(), "lr": self.lr},
                {"params": self.head_.parameters(), "lr": self.head_lr},
            ],
            weight_decay=self.weight_decay,
        )
        steps = max(1, self.epochs * math.ceil(n / self.batch_size))
        warmup = max(1, steps // 10)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup)))
        )
        y_t = torch.as_tensor(y, device=self.device)
        w_t = torch.as_tensor(w, device=self.device)
        self.encoder_.train()
        self.losses_ = []
        for _ in range(self.epochs):
            order = rng.permutation(n)
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                logits = self._logits([texts[i] for i in idx])
                index = torch.as_tensor(idx, device=self.device)
                loss = (F.cross_entropy(logits, y_t[index], reduction="none") * w_t[index]).sum() / w_t[index].sum()
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                schedule.step()
                self.losses_.append(float(loss.detach()))
        self.encoder_.eval()
        return self

    # -------------------------------------------------------------------------------- predict
    def _batches(self, texts: list[str]):
        size = 256 if str(self.device).startswith("cuda") else 64
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths pad less
        for start in range(0, len(texts), size):
            idx = order[start : start + size]
            yield idx, [texts[i] for i in idx]

    def predict_proba(self, texts) -> np.ndarray:
        """``p(c|x)``: NumPy float32 ``(n, C)``, columns in the order of ``classes_``."""
        check_is_fitted(self, "head_")
        texts = [str(t) for t in texts]
        out = np.empty((len(texts), self.n_classes_), dtype=np.float32)
        self.encoder_.eval()
        with torch.inference_mode():
            for idx, chunk in self._batches(texts):
                out[idx] = torch.softmax(self._logits(chunk), dim=-1).cpu().numpy()
        return out

    def predict(self, texts) -> np.ndarray:
        """``classes_[argmax_c p(c|x)]``: NumPy ``(n,)`` of the dtype of ``classes_``."""
        best = self.predict_proba(texts).argmax(1)
        return self.classes_[best]

    def predict_proba_members(self, texts) -> np.ndarray:
        """NumPy float32 ``(mc_samples, n, C)``: passes with the encoder's dropout on (MC dropout), seeded
        per pass."""
        check_is_fitted(self, "head_")
        texts = [str(t) for t in texts]
        out = torch.empty(self.mc_samples, len(texts), self.n_classes_)
        self.encoder_.train()
        try:
            with torch.inference_mode():
                for s in range(self.mc_samples):
                    torch.manual_seed(self.random_state * 1000 + s)
                    for idx, chunk in self._batches(texts):
                        out[s, torch.as_tensor(idx)] = torch.softmax(self._logits(chunk), dim=-1).float().cpu()
        finally:
            self.encoder_.eval()
        return out.numpy()

    def score(self, texts, strategy: str) -> np.ndarray:
        """Acquisition score of ``strategy`` for every text: NumPy ``(n,)`` (float32, float64 for ``qbc``).
        BALD and QBC use the MC-dropout passes, the others the mean prediction."""
        fn = SCORE_FUNCTIONS[strategy]
        if strategy in ("bald", "qbc"):
            return fn(torch.from_numpy(self.predict_proba_members(texts))).cpu().numpy()
        return fn(torch.as_tensor(self.predict_proba(texts))[None]).cpu().numpy()

    # ---------------------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        """Hyper-parameters and weights (float32, on CPU); ``torch.save``-able and loadable with
        ``torch.load(..., weights_only=True)`` (``classes`` is a plain list)."""
        check_is_fitted(self, "head_")
        return {
            "kind": "finetune",
            "params": self.get_params(),
            "n_classes": self.n_classes_,
            "classes": self.classes_.tolist(),
            "encoder": {k: v.detach().float().cpu() for k, v in self.encoder_.state_dict().items()},
            "head": {k: v.detach().float().cpu() for k, v in self.head_.state_dict().items()},
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], *, device: str | None = None) -> FineTunedClassifier:
        """Rebuild a fitted model from :meth:`state_dict` (optionally on another ``device``). A state saved
        without ``classes`` (older versions) gets ``classes_ = np.arange(n_classes)``."""
        params = dict(state["params"])
        if device is not None:
            params["device"] = device
        model = cls(**params)
        model.encoder_ = model._load_encoder()
        model.encoder_.load_state_dict(state["encoder"])
        model.encoder_.eval()
        model.n_classes_ = int(state["n_classes"])
        model.classes_ = _state_classes(state, model.n_classes_)
        model.head_ = torch.nn.Linear(_dimension(model.encoder_), model.n_classes_).to(model.device)
        model.head_.load_state_dict(state["head"])
        return model


def _dimension(model) -> int:
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get())


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
