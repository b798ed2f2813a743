"""BANKING77 for the benchmarks: ``../shared/datasets/banking77`` (train = pool, test = evaluation).

A thin layer over ``acquisition.datasets`` (the loader and embedding cache the simulator uses): files
with columns ``text,category``, labels as indices into ``categories.json`` (77 intents), MiniLM vectors
encoded once and kept as .npy under ``var/cache/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from acquisition.datasets import LabelledDataset, dataset_embeddings, load_dataset

ROOT = Path(__file__).resolve().parent.parent
BANKING77_DIR = ROOT.parent / "shared" / "datasets" / "banking77"


def banking77_available(path: Path = BANKING77_DIR) -> bool:
    return all((path / name).is_file() for name in ("train.csv", "test.csv"))


def load_banking77(path: Path = BANKING77_DIR) -> LabelledDataset:
    return load_dataset(path)


def cached_embeddings(
    data: LabelledDataset,
    encoder_name: str = "sentence-transformers/all-MiniLM-L6-v2",
    device: str = "auto",
    cache_dir: Path = ROOT / "var" / "cache",
    log=print,
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) embeddings, encoded once and cached under ``var/cache/``."""
    return dataset_embeddings(data, encoder_name, cache_dir, device=device, log=log)


def read_texts(path: Path) -> list[str]:
    """The ``text`` column of a CSV file (texts may hold quoted newlines)."""
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return [row["text"] for row in csv.DictReader(handle)]
