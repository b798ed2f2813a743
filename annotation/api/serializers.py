"""Input and output shapes of the REST API."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..ingest_records import RejectedRecord
from ..models import IngestBatch, Item, LabelClass, Membership, Project, Role
from ..services.projects import SHORTCUT_KEYS, LabelSpec

PROJECT_SETTINGS = [
    "instructions",
    "task_type",
    "acquisition_strategy",
    "batch_size",
    "exploration_fraction",
    "labels_per_item",
    "max_labels_per_item",
    "review_all_below_kappa",
    "review_disagreements_below_kappa",
    "min_consensus_confidence",
    "retrain_after",
    "lease_seconds",
]


class LabelClassSerializer(serializers.ModelSerializer):
    class Meta:
        model = LabelClass
        fields = ["id", "name", "description", "order", "shortcut"]


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "description": "label name"},
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 100},
                    "shortcut": {"type": "string", "maxLength": 1},
                    "description": {"type": "string", "maxLength": 500},
                },
                "required": ["name"],
            },
        ]
    }
)
class LabelSpecField(serializers.Field):
    """A label given as its name (``"refund"``) or as ``{"name", "shortcut"?, "description"?}``."""

    default_error_messages = {"invalid": "each label is a name or an object with a name"}

    def to_internal_value(self, data) -> LabelSpec:
        if isinstance(data, str):
            data = {"name": data}
        if not isinstance(data, dict):
            self.fail("invalid")
        unknown = set(data) - {"name", "shortcut", "description"}
        if unknown:
            raise serializers.ValidationError(f"unknown label field(s): {', '.join(sorted(unknown))}")
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise serializers.ValidationError("a label name must be a non-empty string")
        if len(name.strip()) > 100:
            raise serializers.ValidationError(f"label name {name[:20]!r}… is longer than 100 characters")
        shortcut = data.get("shortcut")
        if shortcut is not None:
            if not isinstance(shortcut, str) or (
                shortcut and (len(shortcut) != 1 or shortcut.lower() not in SHORTCUT_KEYS + "su")
            ):
                raise serializers.ValidationError(f"shortcut of {name!r} must be one character of 0-9 or a-z")
            shortcut = shortcut.lower()
        description = data.get("description")  # None: keep an existing label's description
        if description is not None and (not isinstance(description, str) or len(description) > 500):
            raise serializers.ValidationError(f"description of {name!r} must be a string of at most 500 characters")
        return LabelSpec(name=name.strip(), shortcut=shortcut, description=description)

    def to_representation(self, value):
        return LabelClassSerializer(value).data


class ProjectSerializer(serializers.ModelSerializer):
    labels = serializers.ListField(child=LabelSpecField(), min_length=1, max_length=1000, write_only=True)
    my_role = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            *PROJECT_SETTINGS,
            "encoder",
            "embedding_dim",
            "labels",
            "my_role",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at", "my_role"]

    def get_my_role(self, project) -> str | None:
        roles = self.context.get("roles", {})
        return roles.get(project.pk)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["labels"] = LabelClassSerializer(instance.labels.all(), many=True).data
        return data

    def validate(self, attrs):
        # Cross-field checks, against the stored values on a partial update.
        def current(name):
            return attrs.get(
                name,
                getattr(self.instance, name, None) if self.instance else Project._meta.get_field(name).get_default(),
            )

        errors = {}
        if current("max_labels_per_item") < current("labels_per_item"):
            errors["max_labels_per_item"] = "must be at least labels_per_item"
        if current("review_all_below_kappa") > current("review_disagreements_below_kappa"):
            errors["review_all_below_kappa"] = "must not exceed review_disagreements_below_kappa"
        for name, low, high in [
            ("exploration_fraction", 0, 1),
            ("min_consensus_confidence", 0, 1),
            ("review_all_below_kappa", -1, 1),
            ("review_disagreements_below_kappa", -1, 1),
        ]:
            if name in attrs and not low <= attrs[name] <= high:
                errors[name] = f"must be between {low} and {high}"
        for name, low in [
            ("batch_size", 1),
            ("labels_per_item", 1),
            ("retrain_after", 1),
            ("lease_seconds", 10),
            ("embedding_dim", 1),
        ]:
            if name in attrs and attrs[name] < low:
                errors[name] = f"must be at least {low}"
        if self.instance is not None:
            for frozen in ("embedding_dim", "encoder"):
                if frozen in attrs and attrs[frozen] != getattr(self.instance, frozen):
                    errors[frozen] = "cannot be changed after the project is created (stored embeddings depend on it)"
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class ProjectDetailSerializer(ProjectSerializer):
    item_counts = serializers.SerializerMethodField()

    class Meta(ProjectSerializer.Meta):
        fields = [*ProjectSerializer.Meta.fields, "item_counts"]

    def get_item_counts(self, project) -> dict[str, int]:
        from ..selectors import item_counts

        return item_counts(project)


class ItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = Item
        fields = ["id", "external_id", "text", "metadata", "status", "embedding_state", "created_at", "updated_at"]


class IngestRecordSerializer(serializers.Serializer):
    """One pushed record (documentation of the request body; validation is in ingest_records)."""

    external_id = serializers.CharField(max_length=255)
    text = serializers.CharField()
    metadata = serializers.DictField(required=False)
    embedding = serializers.ListField(child=serializers.FloatField(), required=False)


class RejectedRecordSerializer(serializers.Serializer):
    index = serializers.IntegerField(required=False, help_text="0-based position in a JSON array")
    line = serializers.IntegerField(required=False, help_text="1-based line in JSON Lines or CSV")
    external_id = serializers.CharField(allow_null=True)
    errors = serializers.DictField(child=serializers.CharField())


def rejected_as_dicts(rejected: list[RejectedRecord], position_kind: str, limit: int = 1000) -> list[dict]:
    return [{position_kind: r.position, "external_id": r.external_id, "errors": r.errors} for r in rejected[:limit]]


class IngestReportSerializer(serializers.Serializer):
    batch_id = serializers.IntegerField(allow_null=True)
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    embeddings_written = serializers.IntegerField()
    awaiting_embedding = serializers.IntegerField()
    rejected_count = serializers.IntegerField()
    rejected = RejectedRecordSerializer(many=True)


class IngestBatchSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = IngestBatch
        fields = [
            "id",
            "format",
            "status",
            "records",
            "created",
            "updated",
            "unchanged",
            "rejected",
            "awaiting_embedding",
            "duration_ms",
            "created_by",
            "created_at",
            "processed_at",
        ]


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")
    user_id = serializers.IntegerField(source="user.id", read_only=True)

    class Meta:
        model = Membership
        fields = ["username", "user_id", "role", "created_at"]


class MembershipWriteSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)


class RoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)
