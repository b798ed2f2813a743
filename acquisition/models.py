"""The model side's data. For now: item embeddings.

Embeddings live in their own table, one row per item, as little-endian float32 bytes:
- the ``Item`` rows that listing and queue queries scan stay narrow (a 384-d vector is 1.5 kB);
- every worker that can reach the database can read them (no shared file system needed);
- ``(project, updated_at)`` is indexed, so a scoring run loads only the rows written since
  its previous run instead of reloading a million vectors.
"""

import numpy as np
from django.db import models


class ItemEmbedding(models.Model):
    item = models.OneToOneField("annotation.Item", on_delete=models.CASCADE, primary_key=True, related_name="embedding")
    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="+")
    vector = models.BinaryField()
    dim = models.PositiveIntegerField()
    # Which encoder produced the vector ("provided" when the client pushed it with the item).
    source = models.CharField(max_length=200)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["project", "updated_at"], name="embedding_project_updated")]
        constraints = [
            models.CheckConstraint(condition=models.Q(dim__gte=1), name="embedding_dim_positive"),
        ]

    def __str__(self) -> str:
        return f"embedding of item {self.item_id} ({self.dim}-d, {self.source})"

    def as_array(self) -> np.ndarray:
        return np.frombuffer(bytes(self.vector), dtype="<f4")
