"""Input and output shapes of the REST API."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from quorum.security import nul_free
from quorum.vocabulary import KNOWN_ENCODERS, MAX_EMBEDDING_DIM, encoder_dimension

from ..ingest_records import RejectedRecord
from ..models import (
    Annotation,
    AssignmentStatus,
    IngestBatch,
    Item,
    LabelClass,
    Membership,
    Project,
    QueueReason,
    ReviewReason,
    ReviewStatus,
    Role,
)
from ..selectors import item_counts
from ..services.projects import SHORTCUT_KEYS, LabelSpec
from ..task_types import label_names

PROJECT_SETTINGS = [
    "instructions",
    "task_type",
    "allow_empty_tags",
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
    "training_mode",
    "eval_fraction",
    "promotion_tolerance",
    "honeypot_rate",
    "onboarding_honeypots",
    "min_honeypot_accuracy",
    "min_honeypots",
    "paused_answers",
    "hidden_metadata",
]


class LabelClassSerializer(serializers.ModelSerializer):
    class Meta:
        model = LabelClass
        fields = ["id", "name", "description", "order", "shortcut"]


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "description": "label name", "minLength": 1, "maxLength": 100, "pattern": r"\S"},
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": r"\S"},
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
        for key in ("name", "shortcut", "description"):
            if isinstance(data.get(key), str):
                try:
                    nul_free(data[key])
                except serializers.ValidationError:
                    raise serializers.ValidationError(
                        f"label {key} must not contain a NUL character or a lone surrogate"
                    ) from None
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


def installed_encoders() -> dict[str, int]:
    """The deployment's own encoders (``QUORUM_EXTRA_ENCODERS``, which holds ``QUORUM_ENCODER``)."""
    return settings.QUORUM_EXTRA_ENCODERS


# Bounds of the numeric settings, checked field by field (so that every bad field is reported in
# one answer) with one wording: "must be at least N" or "must be between LOW and HIGH".
SETTING_BOUNDS = {
    "batch_size": (1, None),
    "labels_per_item": (1, None),
    "max_labels_per_item": (1, None),
    "retrain_after": (1, None),
    "lease_seconds": (10, None),
    "min_honeypots": (1, None),
    "onboarding_honeypots": (0, None),
    "exploration_fraction": (0, 1),
    "min_consensus_confidence": (0, 1),
    "review_all_below_kappa": (-1, 1),
    "review_disagreements_below_kappa": (-1, 1),
    "eval_fraction": (0, 0.5),
    "promotion_tolerance": (0, 1),
    "honeypot_rate": (0, 1),
    "min_honeypot_accuracy": (0, 1),
}


def _bound_kwargs(low, high) -> dict:
    if high is None:
        message = f"must be at least {low}"
        return {"min_value": low, "error_messages": {"min_value": message}}
    message = f"must be between {low} and {high}"
    return {"min_value": low, "max_value": high, "error_messages": {"min_value": message, "max_value": message}}


HASHING_PATTERN = r"^hashing:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-6])$"


@extend_schema_field(
    {
        "type": "string",
        "anyOf": [{"enum": sorted(KNOWN_ENCODERS)}, {"pattern": HASHING_PATTERN}],
        "description": "An installed sentence encoder: 'sentence-transformers/all-MiniLM-L6-v2' (384-d), "
        "'hashing:<dim>' (1 <= dim <= 65536) or one of the deployment's QUORUM_EXTRA_ENCODERS. "
        "Fixed once the project exists.",
    }
)
class EncoderField(serializers.CharField):
    pass


@extend_schema_field(
    {
        "type": "integer",
        "readOnly": True,
        "description": "Length of the encoder's vectors, set from the encoder. A request may repeat it; "
        "it must then equal the encoder's.",
    }
)
class EmbeddingDimField(serializers.IntegerField):
    pass


class FieldNamesField(serializers.ListField):
    """A list of metadata field names; a form may send them comma-separated in one string."""

    child = serializers.CharField(max_length=200, validators=[nul_free])

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = [name.strip() for name in data.split(",") if name.strip()]
        return sorted(set(super().to_internal_value(data)))


class ProjectSerializer(serializers.ModelSerializer):
    hidden_metadata = FieldNamesField(max_length=200, required=False)
    labels = serializers.ListField(child=LabelSpecField(), min_length=1, max_length=1000, write_only=True)
    my_role = serializers.SerializerMethodField()
    encoder = EncoderField(max_length=200, required=False)
    embedding_dim = EmbeddingDimField(min_value=1, max_value=MAX_EMBEDDING_DIM, required=False)

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
        extra_kwargs = {name: _bound_kwargs(low, high) for name, (low, high) in SETTING_BOUNDS.items()}

    def get_my_role(self, project) -> str | None:
        roles = self.context.get("roles", {})
        return roles.get(project.pk)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["labels"] = LabelClassSerializer(instance.labels.all(), many=True).data
        return data

    def to_internal_value(self, data):
        """Every error in one answer: when some fields are invalid, the cross-field checks still run
        on the fields that are valid (DRF would skip ``validate`` until every field passes)."""
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not isinstance(exc.detail, dict) or not isinstance(data, dict):
                raise
            errors = dict(exc.detail)
        valid = {}
        for field in self._writable_fields:
            if field.field_name in errors or field.field_name not in PROJECT_SETTINGS:
                continue
            primitive = field.get_value(data)
            if primitive is serializers.empty:
                continue
            try:
                valid[field.source] = field.run_validation(primitive)
            except serializers.ValidationError:
                continue
        for name, message in self._cross_field_errors(valid).items():
            errors.setdefault(name, [message])
        raise serializers.ValidationError(errors)

    def _cross_field_errors(self, attrs) -> dict:
        """Pairs of settings that must agree. The message goes under the field that was changed
        (both when both were, the first when none was: a new project)."""

        def current(name):
            return attrs.get(
                name,
                getattr(self.instance, name, None) if self.instance else Project._meta.get_field(name).get_default(),
            )

        def changed(name):
            return name in attrs and (self.instance is None or attrs[name] != getattr(self.instance, name))

        errors = {}
        pairs = [
            ("labels_per_item", "max_labels_per_item", "at most", "at least"),
            ("review_all_below_kappa", "review_disagreements_below_kappa", "at most", "at least"),
        ]
        for low_name, high_name, low_says, high_says in pairs:
            low, high = current(low_name), current(high_name)
            if low is None or high is None or low <= high:
                continue
            blamed = [name for name in (low_name, high_name) if changed(name)] or [low_name]
            if low_name in blamed:
                errors[low_name] = f"must be {low_says} {high_name} ({high})"
            if high_name in blamed:
                errors[high_name] = f"must be {high_says} {low_name} ({low})"
        return errors

    def validate(self, attrs):
        # Cross-field checks, against the stored values on a partial update.
        errors = self._cross_field_errors(attrs)
        if self.instance is not None:
            for frozen in ("embedding_dim", "encoder"):
                if frozen in attrs and attrs[frozen] != getattr(self.instance, frozen):
                    errors[frozen] = "cannot be changed after the project is created (stored embeddings depend on it)"
            if "task_type" in attrs and attrs["task_type"] != self.instance.task_type:
                errors["task_type"] = "cannot be changed after the project is created (annotations depend on it)"
        else:
            self._check_encoder(attrs, errors)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def _check_encoder(self, attrs, errors) -> None:
        """A new project names an installed encoder, and stores vectors of that encoder's length."""
        if "encoder" not in attrs and "embedding_dim" not in attrs:
            return  # the deployment's defaults (QUORUM_ENCODER, QUORUM_EMBEDDING_DIM)
        encoder = attrs.get("encoder", settings.QUORUM_ENCODER)
        dim = encoder_dimension(encoder, installed_encoders())
        if dim is None:
            extra = sorted(set(installed_encoders()) - {settings.QUORUM_ENCODER})
            errors["encoder"] = (
                f"{encoder[:80]!r} is not an installed encoder; use 'sentence-transformers/all-MiniLM-L6-v2', "
                f"'hashing:<dim>' (1 <= dim <= 65536){' or one of ' + ', '.join(extra) if extra else ''}"
            )
        elif "embedding_dim" not in attrs:
            attrs["embedding_dim"] = dim
        elif attrs["embedding_dim"] != dim:
            errors["embedding_dim"] = f"the encoder {encoder!r} makes {dim}-d vectors, not {attrs['embedding_dim']}"


class ProjectDetailSerializer(ProjectSerializer):
    item_counts = serializers.SerializerMethodField()

    class Meta(ProjectSerializer.Meta):
        fields = [*ProjectSerializer.Meta.fields, "item_counts"]

    def get_item_counts(self, project) -> dict[str, int]:
        return item_counts(project)


class ItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = Item
        fields = [
            "id",
            "external_id",
            "text",
            "metadata",
            "status",
            "embedding_state",
            "honeypot",
            "created_at",
            "updated_at",
        ]


class IngestRecordSerializer(serializers.Serializer):
    """One pushed record (documentation of the request body; validation is in ingest_records)."""

    external_id = serializers.CharField(max_length=255)
    text = serializers.CharField()
    metadata = serializers.DictField(required=False)
    embedding = serializers.ListField(child=serializers.FloatField(), required=False)
    label = serializers.CharField(
        required=False,
        help_text="A label name of the project: the item's trusted (gold) label; final, never queued.",
    )
    honeypot = serializers.BooleanField(
        required=False,
        help_text="With label: a hidden test item, served to annotators like any other and scored against its label.",
    )


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
    labels_set = serializers.IntegerField(help_text="Gold labels or honeypot flags set or changed by this push.")
    rejected_count = serializers.IntegerField()
    rejected = RejectedRecordSerializer(many=True)


class IngestBatchSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    drift = serializers.DictField(
        read_only=True,
        help_text="{} while pending; status done: psi_max, ks_max, level (ok < 0.1 <= warning <= 0.25 < critical), "
        "components (psi, ks, ks_pvalue per principal component), n_reference (items of the pool before the push), "
        "n_new; or status no_reference.",
    )

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
            "drift",
            "created_by",
            "created_at",
            "processed_at",
        ]


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")
    user_id = serializers.IntegerField(source="user.id", read_only=True)
    paused = serializers.SerializerMethodField(help_text="Paused by quality control (honeypot accuracy).")

    class Meta:
        model = Membership
        fields = ["username", "user_id", "role", "created_at", "paused", "paused_at", "pause_reason", "reinstated_at"]
        read_only_fields = ["paused_at", "pause_reason", "reinstated_at"]

    def get_paused(self, membership) -> bool:
        return membership.paused_at is not None


class MembershipWriteSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)


class RoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)


class UserCreateSerializer(serializers.Serializer):
    """A new account: an initial ``password``, or none for a one-time invitation link."""

    username = serializers.CharField(max_length=150)
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(
        required=False, write_only=True, trim_whitespace=False, help_text="Omit it for an invitation link."
    )
    project = serializers.IntegerField(required=False, help_text="Add the account to this project …")
    role = serializers.ChoiceField(choices=Role.choices, required=False, help_text="… with this role (annotator).")


class UserCreatedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.EmailField()
    project = serializers.IntegerField(allow_null=True)
    role = serializers.CharField(allow_null=True)
    invitation_url = serializers.CharField(
        allow_null=True, help_text="One-time link on which the invitee sets a password (null when one was given)."
    )


# --- the annotator's queue -------------------------------------------------------------------
# Responses are built by the ``*_payload`` functions (plain dicts: the next-item path is hot);
# the serializers below document the same shapes in the OpenAPI schema and validate input.


class NextRequestSerializer(serializers.Serializer):
    held = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        required=False,
        default=list,
        max_length=50,
        help_text="Ids of the assignments the client already shows (current and prefetched item).",
    )
    suggest = serializers.BooleanField(
        required=False, default=False, help_text="Include the model's suggested label (off by default)."
    )


class QueueItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField()
    text = serializers.CharField()
    metadata = serializers.DictField()


class AssignmentOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField()
    item = QueueItemSerializer()
    status = serializers.ChoiceField(choices=AssignmentStatus.choices)
    leased_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    reason = serializers.ChoiceField(choices=QueueReason.choices, allow_null=True)


class SuggestedTagSerializer(serializers.Serializer):
    label = serializers.CharField()
    p = serializers.FloatField(help_text="The model's probability that the tag applies.")


class SuggestionSerializer(serializers.Serializer):
    label = serializers.CharField(required=False, help_text="Single-label projects: the predicted label.")
    confidence = serializers.FloatField(allow_null=True)
    labels = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Multi-label projects: the predicted tag set."
    )
    tags = SuggestedTagSerializer(
        many=True, required=False, help_text="Multi-label projects: every tag's probability, most probable first."
    )


class ProgressSerializer(serializers.Serializer):
    done_today = serializers.IntegerField()
    done_total = serializers.IntegerField()
    remaining = serializers.IntegerField(help_text="Open queue slots you could still take (counted up to a cap).")
    remaining_capped = serializers.BooleanField(help_text="True when remaining reached the cap (there may be more).")
    refill_running = serializers.BooleanField(help_text="A scoring run is preparing more items.")


class NextResponseSerializer(serializers.Serializer):
    assignment = AssignmentOutSerializer(allow_null=True)
    suggestion = SuggestionSerializer(allow_null=True)
    progress = ProgressSerializer()
    code = serializers.ChoiceField(choices=["queue_empty", "lease_limit", "paused"], allow_null=True)
    message = serializers.CharField(required=False, help_text="Why you get nothing, in words (only with paused).")


class AnnotationAnswerSerializer(serializers.Serializer):
    """The answer: ``label`` on single-label projects, ``labels`` (a tag set) on multi-label ones."""

    label = serializers.CharField(
        max_length=100, required=False, help_text="Single-label projects: a label name of the project."
    )
    labels = serializers.ListField(
        child=serializers.CharField(max_length=100),
        required=False,
        max_length=1000,
        help_text="Multi-label projects: the tag set, label names of the project ([] when the project allows "
        "an empty set).",
    )

    def validate(self, attrs):
        if "label" in attrs and "labels" in attrs:
            raise serializers.ValidationError({"labels": "send either label or labels, not both"})
        # Neither: the project's task type says which one is missing (``task_types``).
        return attrs


class AnnotationSubmitSerializer(AnnotationAnswerSerializer):
    time_spent_ms = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False, default=0)


class AnnotationChangeSerializer(AnnotationAnswerSerializer):
    pass


class SkipSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class AnnotationOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField()
    item = serializers.IntegerField(help_text="Item id.")
    assignment = serializers.IntegerField(allow_null=True)
    user = serializers.CharField(help_text="Username of the annotator.")
    label = serializers.CharField(required=False, help_text="Single-label projects: the label name.")
    labels = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Multi-label projects: the tag set (label names)."
    )
    time_spent_ms = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class AnnotationResponseSerializer(serializers.Serializer):
    annotation = AnnotationOutSerializer()
    progress = ProgressSerializer(required=False)
    paused = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="Null, or why quality control paused you after this answer (the next item is refused).",
    )


class AssignmentResponseSerializer(serializers.Serializer):
    assignment = AssignmentOutSerializer()


def assignment_payload(assignment, entry=None) -> dict:
    item = assignment.item
    hidden = set(assignment.project.hidden_metadata or ())
    shown = {key: value for key, value in (item.metadata or {}).items() if key not in hidden}
    return {
        "id": assignment.pk,
        "project": assignment.project_id,
        "item": {"id": item.pk, "external_id": item.external_id, "text": item.text, "metadata": shown},
        "status": assignment.status,
        "leased_at": assignment.leased_at,
        "expires_at": assignment.expires_at,
        "reason": entry.reason if entry is not None else None,
    }


def suggestion_payload(entry) -> dict | None:
    if entry is None:
        return None
    if entry.suggested_tags is not None:
        names = label_names(entry.project_id)
        p = {int(label_id): float(value) for label_id, value in (entry.suggested_tags.get("p") or {}).items()}
        tags = entry.suggested_tags.get("tags") or []
        return {
            "labels": [names[i] for i in tags if i in names],
            "confidence": entry.suggested_confidence,
            "tags": [
                {"label": names[i], "p": round(value, 4)}
                for i, value in sorted(p.items(), key=lambda kv: -kv[1])
                if i in names
            ],
        }
    if entry.suggested_label_id is None:
        return None
    return {"label": entry.suggested_label.name, "confidence": entry.suggested_confidence}


def _answer_fields(annotation) -> dict:
    if annotation.tags is not None:
        names = label_names(annotation.project_id)
        return {"labels": [names[i] for i in annotation.tags if i in names]}
    return {"label": annotation.label.name}


def annotation_payload(annotation, *, username: str | None = None) -> dict:
    return {
        "id": annotation.pk,
        "project": annotation.project_id,
        "item": annotation.item_id,
        "assignment": annotation.assignment_id,
        "user": username if username is not None else annotation.user.get_username(),
        **_answer_fields(annotation),
        "time_spent_ms": annotation.time_spent_ms,
        "created_at": annotation.created_at,
        "updated_at": annotation.updated_at,
    }


class AnnotationListSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="annotator_name", read_only=True, help_text="deleted-user-<id> once deleted")
    label = serializers.SlugRelatedField(
        slug_field="name", read_only=True, allow_null=True, help_text="Single-label projects (null on multi-label)."
    )
    labels = serializers.SerializerMethodField(help_text="Multi-label projects: the tag set (null on single-label).")

    class Meta:
        model = Annotation
        fields = [
            "id",
            "project",
            "item",
            "assignment",
            "user",
            "label",
            "labels",
            "time_spent_ms",
            "created_at",
            "updated_at",
        ]

    def get_labels(self, annotation) -> list[str] | None:
        if annotation.tags is None:
            return None
        cache = self.context.setdefault("_label_names", {})
        if annotation.project_id not in cache:
            cache[annotation.project_id] = label_names(annotation.project_id)
        names = cache[annotation.project_id]
        return [names[i] for i in annotation.tags if i in names]


# --- expert review and agreement -------------------------------------------------------------
# Responses are built by ``selectors.review_payloads`` / ``selectors.agreement_latest``; these
# serializers document them and validate input.


class ReviewAnnotationSerializer(serializers.Serializer):
    username = serializers.CharField()
    label = serializers.CharField(required=False, help_text="Single-label projects: the label chosen.")
    labels = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Multi-label projects: the tag set chosen (label names; [] for none of them).",
    )
    annotator_quality = serializers.FloatField(
        allow_null=True, help_text="The annotator's Dawid-Skene accuracy (null before the first aggregation)."
    )
    created_at = serializers.DateTimeField()


class PosteriorEntrySerializer(serializers.Serializer):
    label = serializers.CharField()
    p = serializers.FloatField()


class ReviewVoteSerializer(serializers.Serializer):
    label = serializers.CharField()
    n = serializers.IntegerField()


class ReviewReasonFactsSerializer(serializers.Serializer):
    labels = serializers.IntegerField(help_text="Labels (answers) the item has.")
    votes = ReviewVoteSerializer(
        many=True,
        help_text="Labels given, most frequent first; multi-label: per tag, the annotators who chose it.",
    )
    confidence = serializers.FloatField(
        allow_null=True,
        help_text="Largest posterior on the task now; multi-label: the least confident tag's max(p, 1 - p).",
    )
    threshold = serializers.FloatField(help_text="The project's min_consensus_confidence in force.")


class ReviewOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item = QueueItemSerializer()
    reason = serializers.ChoiceField(choices=ReviewReason.choices)
    reason_text = serializers.CharField(
        help_text="Why the item is in review, in words, from the reason and the item's actual figures."
    )
    reason_facts = ReviewReasonFactsSerializer()
    status = serializers.ChoiceField(choices=ReviewStatus.choices)
    created_at = serializers.DateTimeField()
    annotations = ReviewAnnotationSerializer(many=True)
    posterior = PosteriorEntrySerializer(
        many=True,
        help_text="Aggregated posterior, most probable label first; multi-label: P(tag present) per tag, "
        "most probable first (tags under 0.001 left out).",
    )
    model_prediction = SuggestionSerializer(allow_null=True)
    claimed_by = serializers.CharField(allow_null=True)
    resolved_by = serializers.CharField(allow_null=True)
    resolved_at = serializers.DateTimeField(allow_null=True)
    decision = serializers.CharField(allow_null=True, help_text="Single-label projects: the decided label.")
    note = serializers.CharField(allow_blank=True)
    disputed = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Multi-label projects: the tags in dispute (split evenly or under the confidence threshold), "
        "most disputed first.",
    )
    decision_labels = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        allow_null=True,
        help_text="Multi-label projects: the decided tag set (null while open).",
    )


class ReviewResponseSerializer(serializers.Serializer):
    review = ReviewOutSerializer()


class ReviewNextResponseSerializer(serializers.Serializer):
    review = ReviewOutSerializer(allow_null=True)
    open = serializers.IntegerField(help_text="Open review tasks of the project.")


class ReviewResolveSerializer(AnnotationAnswerSerializer):
    """The decision: ``label`` on single-label projects, ``labels`` (a tag set) on multi-label ones."""

    note = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")


class AgreementAnnotatorSerializer(serializers.Serializer):
    username = serializers.CharField()
    n_annotations = serializers.IntegerField()
    ds_accuracy = serializers.FloatField(
        allow_null=True, help_text="Dawid-Skene confusion diagonal weighted by the class priors."
    )
    gold_accuracy = serializers.FloatField(allow_null=True, help_text="Share right on reviewed/gold items.")
    gold_n = serializers.IntegerField()
    agreement_rate = serializers.FloatField(
        allow_null=True, help_text="Share of the other annotations on the same items with the same label."
    )


class KappaMatrixSerializer(serializers.Serializer):
    annotators = serializers.ListField(child=serializers.CharField())
    values = serializers.ListField(child=serializers.ListField(child=serializers.FloatField(allow_null=True)))


class AgreementSerializer(serializers.Serializer):
    computed_at = serializers.DateTimeField(allow_null=True)
    project_kappa = serializers.FloatField(
        allow_null=True, help_text="Mean pairwise Cohen's kappa over pairs sharing >= 10 items, weighted by overlap."
    )
    fleiss_kappa = serializers.FloatField(allow_null=True)
    krippendorff_alpha = serializers.FloatField(allow_null=True)
    policy = serializers.ChoiceField(choices=["all", "disagreements", "confidence"], allow_null=True)
    annotators = AgreementAnnotatorSerializer(many=True)
    kappa_matrix = KappaMatrixSerializer()
    n_annotations = serializers.IntegerField()
    n_items = serializers.IntegerField()
    n_overlap_items = serializers.IntegerField(help_text="Items with two or more labels.")
    n_gold = serializers.IntegerField()
    n_items_final = serializers.IntegerField()
    duration_ms = serializers.IntegerField(allow_null=True)
