"""Output shapes of the model side's REST endpoints."""

from __future__ import annotations

from rest_framework import serializers

from ..models import ModelVersion, ScoringRun


class ScoringRunSerializer(serializers.ModelSerializer):
    progress = serializers.FloatField(read_only=True, help_text="Fraction done, 0..1.")
    model_version = serializers.IntegerField(source="model_version_id", read_only=True, allow_null=True)
    model_version_number = serializers.IntegerField(
        source="model_version.version", read_only=True, allow_null=True, default=None
    )
    timings = serializers.DictField(read_only=True, help_text="Seconds per phase: load, predict, score, select, write.")

    class Meta:
        model = ScoringRun
        fields = [
            "id",
            "status",
            "strategy",
            "trigger",
            "model_version",
            "model_version_number",
            "progress",
            "n_items",
            "n_chunks",
            "chunks_done",
            "selected",
            "explored",
            "timings",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class ScoringRunRequestSerializer(serializers.Serializer):
    trigger = serializers.CharField(max_length=32, required=False, default="manual")


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "version",
            "status",
            "kind",
            "label_names",
            "hyperparameters",
            "seed",
            "n_labels",
            "label_snapshot_hash",
            "code_version",
            "metrics",
            "train_seconds",
            "decision",
            "created_at",
            "promoted_at",
        ]
        read_only_fields = fields
