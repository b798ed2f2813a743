"""Sentence encoders: the hashing encoder, the packaged all-MiniLM-L6-v2 (offline), device resolution."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch

from acquisition import encoders
from acquisition.encoders import HashingEncoder, get_encoder, minilm_path, resolve_device

PARAPHRASE_A = "my card has not arrived"
PARAPHRASE_B = "the card I ordered is still not here"
UNRELATED = "what is the exchange rate"

MIXED_LENGTHS = [
    "hi",
    "How long does a transfer from another bank take to show up in my account?",
    "exchange rate",
    "",
    "I was charged twice for the same purchase at the supermarket yesterday, please refund one of them",
    "top up failed",
    "Why is my PIN blocked?",
]


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ------------------------------------------------------------------------------- hashing encoder
@pytest.fixture(scope="module")
def hashing():
    return HashingEncoder(64)


def test_hashing_shape_dtype_and_unit_rows(hashing):
    vectors = hashing.encode(MIXED_LENGTHS[:3] + MIXED_LENGTHS[4:])
    assert vectors.shape == (6, 64)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert hashing.dim == 64 and hashing.name == "hashing:64" and hashing.device == torch.device("cpu")


def test_hashing_is_deterministic_across_instances(hashing):
    again = HashingEncoder(64)
    np.testing.assert_array_equal(hashing.encode(MIXED_LENGTHS), again.encode(MIXED_LENGTHS))


def test_hashing_order_and_batch_size_do_not_change_vectors(hashing):
    whole = hashing.encode(MIXED_LENGTHS, batch_size=3)
    one_by_one = np.vstack([hashing.encode([t]) for t in MIXED_LENGTHS])
    np.testing.assert_allclose(whole, one_by_one, atol=1e-6)
    reversed_ = hashing.encode(MIXED_LENGTHS[::-1])
    np.testing.assert_allclose(reversed_[::-1], whole, atol=1e-6)


def test_hashing_similar_texts_are_closer_than_unrelated(hashing):
    a, b, c = hashing.encode(["my card has not arrived yet", "my new card has still not arrived", UNRELATED])
    assert cos(a, b) > cos(a, c) + 0.2
    assert cos(a, b) > cos(b, c) + 0.2


def test_hashing_empty_text_and_empty_input(hashing):
    assert hashing.encode([]).shape == (0, 64)
    assert hashing.encode([]).dtype == np.float32
    empty = hashing.encode([""])
    assert empty.shape == (1, 64) and np.all(np.isfinite(empty))


def test_encode_rejects_a_bare_string_and_non_strings(hashing):
    with pytest.raises(TypeError, match="single string"):
        hashing.encode("not a list")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        hashing.encode(["ok", 3])
    with pytest.raises(ValueError, match="batch_size"):
        hashing.encode(["ok"], batch_size=0)


# ----------------------------------------------------------------------------- name resolution
def test_get_encoder_caches_per_process():
    first = get_encoder("hashing:32")
    assert get_encoder("hashing:32", device="cpu") is first
    assert get_encoder("hashing:48") is not first
    assert first.encode(["card"]).shape == (1, 32)


@pytest.mark.parametrize("name", ["bert-base-uncased", "sentence-transformers/unknown-model", "/no/such/directory"])
def test_unknown_encoder_names_are_rejected_with_the_accepted_list(name):
    with pytest.raises(ValueError) as info:
        get_encoder(name)
    message = str(info.value)
    assert name in message
    assert "all-MiniLM-L6-v2" in message and "hashing:<dim>" in message and "local directory" in message


@pytest.mark.parametrize("name", ["hashing", "hashing:", "hashing:0", "hashing:-3", "hashing:abc", "hashing:9999999"])
def test_bad_hashing_dimensions_are_rejected(name):
    with pytest.raises(ValueError, match="hashing"):
        get_encoder(name)


def test_blank_name_is_rejected():
    with pytest.raises(ValueError, match="non-empty"):
        get_encoder("  ")


# ------------------------------------------------------------------------------------- devices
def test_resolve_device_auto_and_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "tpu", "banana"])
def test_resolve_device_rejects_unknown_strings(spec):
    with pytest.raises(ValueError, match="auto"):
        resolve_device(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_resolve_device_cuda_without_cuda_is_a_clear_error(spec):
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_device(spec)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_resolve_device_cuda_index_out_of_range():
    assert resolve_device("cuda") == torch.device("cuda", 0)
    with pytest.raises(RuntimeError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


# ------------------------------------------------------------------------- all-MiniLM-L6-v2
@pytest.fixture(scope="module")
def minilm():
    """The packaged model, loaded on the CPU with every outgoing connection refused."""

    def refuse(*args, **kwargs):
        raise OSError("network access attempted while loading the encoder")

    encoders.clear_encoder_cache()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        encoder = get_encoder("sentence-transformers/all-MiniLM-L6-v2", device="cpu")
    yield encoder
    encoders.clear_encoder_cache()


def test_minilm_loads_offline_from_the_package(minilm):
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert minilm.dim == 384
    assert minilm.device == torch.device("cpu")
    assert get_encoder("all-MiniLM-L6-v2", device="cpu") is minilm


def test_minilm_paraphrases_are_closer_than_unrelated(minilm):
    vectors = minilm.encode([PARAPHRASE_A, PARAPHRASE_B, UNRELATED])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    a, b, c = vectors
    assert cos(a, b) > 0.6
    assert cos(a, b) > cos(a, c) + 0.3
    assert cos(a, b) > cos(b, c) + 0.3


def test_minilm_length_sorted_batches_come_back_in_input_order(minilm):
    batched = minilm.encode(MIXED_LENGTHS, batch_size=2)
    one_by_one = np.vstack([minilm.encode([t]) for t in MIXED_LENGTHS])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)


def test_a_local_directory_loads_as_a_sentence_transformers_model(minilm):
    from_path = get_encoder(str(minilm_path()), device="cpu")
    assert from_path is not minilm and from_path.dim == 384
    np.testing.assert_allclose(from_path.encode([PARAPHRASE_A]), minilm.encode([PARAPHRASE_A]), atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_minilm_on_cuda_runs_fp16_and_matches_the_cpu(minilm):
    gpu = get_encoder("sentence-transformers/all-MiniLM-L6-v2", device="cuda")
    assert gpu.device.type == "cuda"
    assert next(gpu._model.parameters()).dtype == torch.float16
    on_gpu = gpu.encode(MIXED_LENGTHS, batch_size=3)
    assert on_gpu.dtype == np.float32
    on_cpu = minilm.encode(MIXED_LENGTHS)
    assert np.min(np.sum(on_gpu * on_cpu, axis=1)) > 0.99
