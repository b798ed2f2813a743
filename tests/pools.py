"""Embedded pools for tests of the model side: separable clusters of items with vectors, one
cluster per label, stored as the embedding pass would store them."""

from __future__ import annotations

import numpy as np

from acquisition.models import ItemEmbedding
from annotation.models import EmbeddingState, Item


def cluster_pool(
    project, *, clusters: int = 3, per_cluster: int, dim: int, scale: float, spread: float = 2.0, seed: int = 0
) -> list[Item]:
    """``clusters`` × ``per_cluster`` items of ``project`` with ``dim``-d vectors around the first unit
    vectors × ``spread`` (normal noise of ``scale``), ready for scoring; returns them cluster by cluster.
    Sets ``project.by_cluster`` (item ids per cluster) and ``project.cluster_of`` (cluster per id)."""
    rng = np.random.default_rng(seed)
    items = Item.objects.bulk_create(
        [
            Item(project=project, external_id=f"c{c}-{i}", text=f"cluster {c} item {i}", text_hash=f"{c}-{i}")
            for c in range(clusters)
            for i in range(per_cluster)
        ]
    )
    centers = np.eye(dim, dtype=np.float32)[:clusters] * spread
    vectors = np.concatenate([centers[c] + rng.normal(scale=scale, size=(per_cluster, dim)) for c in range(clusters)])
    ItemEmbedding.objects.bulk_create(
        [
            ItemEmbedding(item=item, project=project, vector=vectors[i].astype("<f4").tobytes(), dim=dim, source="t")
            for i, item in enumerate(items)
        ]
    )
    Item.objects.filter(project=project).update(embedding_state=EmbeddingState.READY)
    project.cluster_of = {item.pk: i // per_cluster for i, item in enumerate(items)}
    project.by_cluster = [[item.pk for item in items[c * per_cluster : (c + 1) * per_cluster]] for c in range(clusters)]
    return items
