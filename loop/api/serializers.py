"""Output shapes of the model side's REST endpoints."""

from __future__ import annotations

from rest_framework import serializers

from acquisition.models import ModelVersion, ScoringRun, TrainingJob


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


#: Triggers of the runs the loop starts itself: reserved (a request cannot claim one), and never
#: counted against the hourly limit of requested runs.
LOOP_TRIGGERS = ("ingest", "low_queue", "retrain", "rollback", "followup")


class ScoringRunRequestSerializer(serializers.Serializer):
    trigger = serializers.CharField(
        max_length=32,
        required=False,
        default="manual",
        help_text="A word recorded with the run (default manual); the loop's own triggers "
        "(ingest, low_queue, retrain, rollback, followup) are reserved.",
    )

    def validate_trigger(self, value: str) -> str:
        if value in LOOP_TRIGGERS:
            raise serializers.ValidationError(f"{value!r} is reserved for the runs the loop starts itself")
        return value


class ModelVersionSerializer(serializers.ModelSerializer):
    parent_version = serializers.IntegerField(source="parent.version", read_only=True, allow_null=True, default=None)
    job = serializers.IntegerField(source="job_id", read_only=True, allow_null=True)
    weights_stored = serializers.SerializerMethodField()
    metrics = serializers.DictField(
        read_only=True,
        help_text="eval: accuracy, macro_f1, ece, per_class_recall on the held-out set; gate: this version and the "
        "model that was current, on the held-out labels neither was trained on; eval_sources: where the held-out "
        "labels came from; train: fit figures.",
    )

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
            "device",
            "n_labels",
            "n_train",
            "n_eval",
            "label_snapshot_hash",
            "labels_as_of",
            "eval_set_hash",
            "code_version",
            "metrics",
            "train_seconds",
            "decision",
            "parent_version",
            "job",
            "weights_stored",
            "created_at",
            "promoted_at",
        ]
        read_only_fields = fields

    def get_weights_stored(self, version) -> bool:
        return bool(version.weights)


class TrainingJobSerializer(serializers.ModelSerializer):
    progress = serializers.FloatField(read_only=True, help_text="Fraction done, 0..1.")
    model_version_number = serializers.IntegerField(
        source="model_version.version", read_only=True, allow_null=True, default=None
    )
    scoring_run = serializers.IntegerField(source="scoring_run_id", read_only=True, allow_null=True)
    requested_by = serializers.CharField(source="requested_by.username", read_only=True, default=None)
    timings = serializers.DictField(
        read_only=True, help_text="Seconds per stage: snapshot, train, evaluate, promote, score, total."
    )

    class Meta:
        model = TrainingJob
        fields = [
            "id",
            "status",
            "stage",
            "progress",
            "trigger",
            "mode",
            "requested_by",
            "n_new_labels",
            "model_version_number",
            "outcome",
            "scoring_run",
            "timings",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class TrainingStatusSerializer(serializers.Serializer):
    new_labels = serializers.IntegerField(help_text="Final labels since the newest model's label snapshot.")
    retrain_after = serializers.IntegerField()
    current_version = serializers.IntegerField(allow_null=True)
    active_job = TrainingJobSerializer(allow_null=True)


class ActiveJobSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["ingest", "embedding", "scoring", "training"])
    id = serializers.IntegerField(allow_null=True)
    label = serializers.CharField()
    progress = serializers.FloatField(help_text="0..1")


class ActiveJobsSerializer(serializers.Serializer):
    jobs = ActiveJobSerializer(many=True)
