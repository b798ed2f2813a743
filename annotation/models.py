"""The people side's data: projects, their label sets, pooled items, members, ingest batches.

Models hold data and constraints only; every write goes through ``annotation.services``.
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.functions import Coalesce

from quorum.vocabulary import MULTI_LABEL, STRATEGY_CHOICES, TASK_STRATEGIES, TEXT_CLASSIFICATION

from . import routing


def default_encoder() -> str:
    return settings.QUORUM_ENCODER


def default_embedding_dim() -> int:
    return settings.QUORUM_EMBEDDING_DIM


#: Metadata fields that often carry an answer (a gold column, a source label): hidden from
#: annotators unless a project's admin says otherwise.
ANSWER_LIKE_METADATA = ("gold", "label", "labels", "truth", "answer", "orig", "source")


def default_hidden_metadata() -> list[str]:
    return list(ANSWER_LIKE_METADATA)


class TaskType(models.TextChoices):
    """What one answer is (``quorum.vocabulary``); ``annotation.task_types`` holds what each means."""

    TEXT_CLASSIFICATION = TEXT_CLASSIFICATION, "Single-label text classification"
    MULTI_LABEL = MULTI_LABEL, "Multi-label text classification (a tag set per item)"


#: The acquisition strategies (``quorum.vocabulary``): ``Strategy.MSAL == "msal"``, …
Strategy = models.TextChoices("Strategy", [(value.upper(), (value, label)) for value, label in STRATEGY_CHOICES])


class TrainingMode(models.TextChoices):
    HEADS = "heads", "Committee of heads on the frozen embeddings (CPU is fine)"
    FINETUNE = "finetune", "Fine-tune the encoder + head (GPU worker; heads only without a GPU)"


class PausedAnswers(models.TextChoices):
    WEIGHT = "weight", "Kept, weighted by the skill the aggregator learned"
    EXCLUDE = "exclude", "Left out of the aggregation while the annotator is paused"


class Role(models.TextChoices):
    ANNOTATOR = "annotator", "Annotator"
    REVIEWER = "reviewer", "Reviewer"
    ADMIN = "admin", "Admin"


class Project(models.Model):
    name = models.CharField(max_length=200)
    instructions = models.TextField(blank=True, help_text="Shown to annotators above every item.")
    task_type = models.CharField(max_length=40, choices=TaskType.choices, default=TaskType.TEXT_CLASSIFICATION)
    allow_empty_tags = models.BooleanField(
        default=True,
        db_default=True,
        help_text='Multi-label: an empty tag set ("none of these") is a valid answer.',
    )

    # Acquisition: how the queue is filled.
    acquisition_strategy = models.CharField(max_length=32, choices=Strategy.choices, default=Strategy.MSAL)
    batch_size = models.PositiveIntegerField(default=50, help_text="Items added to the queue per scoring run.")
    exploration_fraction = models.FloatField(
        default=0.1, help_text="Share of every batch drawn uniformly at random (unbiased estimates)."
    )

    # Consensus: how many people label an item and when it goes to review.
    labels_per_item = models.PositiveSmallIntegerField(default=2)
    max_labels_per_item = models.PositiveSmallIntegerField(
        default=3, help_text="Upper bound when disagreement asks for extra labels before review."
    )
    review_all_below_kappa = models.FloatField(
        default=0.6, help_text="Project kappa under which every item is reviewed."
    )
    review_disagreements_below_kappa = models.FloatField(
        default=0.8, help_text="Project kappa under which disagreements are reviewed."
    )
    min_consensus_confidence = models.FloatField(
        default=0.8, help_text="Aggregated-label confidence under which an item needs more labels or review."
    )

    # The loop: retraining and leases.
    retrain_after = models.PositiveIntegerField(default=100, help_text="New final labels that trigger retraining.")
    lease_seconds = models.PositiveIntegerField(default=600, help_text="How long an annotator holds an item.")
    training_mode = models.CharField(max_length=16, choices=TrainingMode.choices, default=TrainingMode.HEADS)
    eval_fraction = models.FloatField(
        default=0.2,
        help_text="Largest share of the final labels held out to evaluate models (gold, exploration first).",
    )
    promotion_tolerance = models.FloatField(
        default=0.02,
        help_text="A new model is promoted unless its accuracy or macro-F1 on the evaluation set is worse than "
        "the current model's by more than this.",
    )

    # Quality control with honeypots (items pushed with a known label and ``honeypot: true``,
    # served like any other item and scored against that label; see ``services.quality``).
    honeypot_rate = models.FloatField(
        default=0.0, help_text="Share of each annotator's items that are honeypots (0: only during onboarding)."
    )
    onboarding_honeypots = models.PositiveIntegerField(
        default=0, help_text="A new annotator's first items that are honeypots (while unseen honeypots remain)."
    )
    min_honeypot_accuracy = models.FloatField(
        default=0.0, help_text="Honeypot accuracy under which an annotator is paused (0: never)."
    )
    min_honeypots = models.PositiveIntegerField(
        default=10, help_text="Honeypots an annotator answers before the minimum accuracy applies."
    )
    paused_answers = models.CharField(
        max_length=8,
        choices=PausedAnswers.choices,
        default=PausedAnswers.WEIGHT,
        help_text="What the aggregation does with a paused annotator's answers.",
    )

    hidden_metadata = models.JSONField(
        default=default_hidden_metadata,
        blank=True,
        help_text="Metadata fields annotators never see (labelling page and API), e.g. a gold column.",
    )

    encoder = models.CharField(max_length=200, default=default_encoder)
    embedding_dim = models.PositiveIntegerField(default=default_embedding_dim)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(batch_size__gte=1),
                name="project_batch_size_positive",
                violation_error_message="batch_size must be at least 1.",
            ),
            models.CheckConstraint(
                condition=Q(exploration_fraction__gte=0) & Q(exploration_fraction__lte=1),
                name="project_exploration_fraction_range",
                violation_error_message="exploration_fraction must be between 0 and 1.",
            ),
            models.CheckConstraint(
                condition=Q(labels_per_item__gte=1),
                name="project_labels_per_item_positive",
                violation_error_message="labels_per_item must be at least 1.",
            ),
            models.CheckConstraint(
                condition=Q(max_labels_per_item__gte=models.F("labels_per_item")),
                name="project_max_labels_at_least_labels",
                violation_error_message="max_labels_per_item must be at least labels_per_item.",
            ),
            models.CheckConstraint(
                condition=Q(review_all_below_kappa__gte=-1)
                & Q(review_disagreements_below_kappa__lte=1)
                & Q(review_all_below_kappa__lte=models.F("review_disagreements_below_kappa")),
                name="project_kappa_thresholds_ordered",
                violation_error_message="kappa thresholds must satisfy -1 <= review_all_below_kappa <= review_disagreements_below_kappa <= 1.",
            ),
            models.CheckConstraint(
                condition=Q(min_consensus_confidence__gte=0) & Q(min_consensus_confidence__lte=1),
                name="project_min_confidence_range",
                violation_error_message="min_consensus_confidence must be between 0 and 1.",
            ),
            models.CheckConstraint(
                condition=Q(retrain_after__gte=1),
                name="project_retrain_after_positive",
                violation_error_message="retrain_after must be at least 1.",
            ),
            models.CheckConstraint(
                condition=Q(eval_fraction__gte=0) & Q(eval_fraction__lte=0.5),
                name="project_eval_fraction_range",
                violation_error_message="eval_fraction must be between 0 and 0.5.",
            ),
            models.CheckConstraint(
                condition=Q(promotion_tolerance__gte=0) & Q(promotion_tolerance__lte=1),
                name="project_promotion_tolerance_range",
                violation_error_message="promotion_tolerance must be between 0 and 1.",
            ),
            models.CheckConstraint(
                condition=Q(training_mode__in=TrainingMode.values),
                name="project_training_mode_valid",
                violation_error_message="unknown training_mode.",
            ),
            models.CheckConstraint(
                condition=Q(lease_seconds__gte=10),
                name="project_lease_at_least_10s",
                violation_error_message="lease_seconds must be at least 10.",
            ),
            models.CheckConstraint(
                condition=Q(honeypot_rate__gte=0) & Q(honeypot_rate__lte=1),
                name="project_honeypot_rate_range",
                violation_error_message="honeypot_rate must be between 0 and 1.",
            ),
            models.CheckConstraint(
                condition=Q(min_honeypot_accuracy__gte=0) & Q(min_honeypot_accuracy__lte=1),
                name="project_min_honeypot_accuracy_range",
                violation_error_message="min_honeypot_accuracy must be between 0 and 1.",
            ),
            models.CheckConstraint(
                condition=Q(min_honeypots__gte=1),
                name="project_min_honeypots_positive",
                violation_error_message="min_honeypots must be at least 1.",
            ),
            models.CheckConstraint(
                condition=Q(paused_answers__in=PausedAnswers.values),
                name="project_paused_answers_valid",
                violation_error_message="unknown paused_answers.",
            ),
            models.CheckConstraint(
                condition=Q(embedding_dim__gte=1),
                name="project_embedding_dim_positive",
                violation_error_message="embedding_dim must be at least 1.",
            ),
            models.CheckConstraint(
                condition=Q(task_type__in=TaskType.values),
                name="project_task_type_valid",
                violation_error_message="unknown task_type.",
            ),
            models.CheckConstraint(
                condition=Q(acquisition_strategy__in=Strategy.values),
                name="project_strategy_valid",
                violation_error_message="unknown acquisition_strategy.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self):
        offered = TASK_STRATEGIES.get(self.task_type)
        if offered is not None and self.acquisition_strategy not in offered:
            raise ValidationError(
                {
                    "acquisition_strategy": f"{self.acquisition_strategy!r} is not offered for {self.task_type} "
                    f"projects; choose one of {', '.join(offered)}"
                }
            )

    @property
    def multi_label(self) -> bool:
        return self.task_type == TaskType.MULTI_LABEL


class LabelClass(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=500, blank=True)
    order = models.PositiveIntegerField()
    shortcut = models.CharField(max_length=1, blank=True, help_text="Key that picks this label (1-9, 0, a-z).")

    class Meta:
        ordering = ["project", "order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="label_name_unique_per_project"),
            models.UniqueConstraint(
                fields=["project", "shortcut"],
                condition=~Q(shortcut=""),
                name="label_shortcut_unique_per_project",
            ),
            models.CheckConstraint(condition=~Q(name=""), name="label_name_not_empty"),
        ]

    def __str__(self) -> str:
        return self.name


class LabelSource(models.TextChoices):
    CONSENSUS = "consensus", "Consensus of annotators"
    REVIEW = "review", "Expert review"
    GOLD = "gold", "Gold (pushed or set by an admin)"


class ItemStatus(models.TextChoices):
    UNLABELED = "unlabeled", "Unlabeled"
    QUEUED = "queued", "Queued"
    IN_PROGRESS = "in_progress", "Being labelled"
    IN_REVIEW = "in_review", "In review"
    FINALIZED = "finalized", "Finalized"


class EmbeddingState(models.TextChoices):
    PENDING = "pending", "Waiting for an embedding"
    QUEUED = "queued", "Embedding requested"
    READY = "ready", "Embedded"
    FAILED = "failed", "Embedding failed"


class Item(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="items")
    external_id = models.CharField(max_length=255)
    text = models.TextField()
    # blake2b-128 of the text: ingest compares hashes instead of pulling every text back.
    text_hash = models.CharField(max_length=32)
    # Bumped when a push changes the text: the item is a new question, and the annotations and
    # leases given for an older text are kept as history only (``superseded_at``, ``ItemRevision``).
    text_revision = models.PositiveIntegerField(default=1, db_default=1)
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=ItemStatus.choices, default=ItemStatus.UNLABELED)
    embedding_state = models.CharField(max_length=16, choices=EmbeddingState.choices, default=EmbeddingState.PENDING)
    # The item's final label once decided (aggregated consensus, expert review or gold), with the
    # aggregator's confidence in it. Training reads these; the queue never hands out final items.
    final_label = models.ForeignKey(
        "LabelClass", null=True, blank=True, on_delete=models.RESTRICT, related_name="final_items"
    )
    final_confidence = models.FloatField(null=True, blank=True)
    # Multi-label projects: the final tag set (sorted label ids; ``[]`` is the empty set) and the
    # posterior of every tag ``{label_id: p}`` (entries of at least 0.001); ``final_confidence`` is
    # then the least confident tag's max(p, 1 - p).
    final_tags = models.JSONField(null=True, blank=True)
    tag_posteriors = models.JSONField(null=True, blank=True)
    final_source = models.CharField(max_length=16, choices=LabelSource.choices, blank=True, db_default="")
    finalized_at = models.DateTimeField(null=True, blank=True)
    # Why the item was first handed to an annotator (a ``QueueReason``): training holds the
    # uniform ``exploration`` sample out as an unbiased evaluation set.
    selected_as = models.CharField(max_length=16, blank=True, db_default="")
    # A hidden test item: pushed with a known label (``final_source`` gold), served to annotators
    # like any other item outside the queue, its answers scored against that label.
    honeypot = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "external_id"], name="item_external_id_unique_per_project"),
            models.CheckConstraint(condition=~Q(external_id=""), name="item_external_id_not_empty"),
            models.CheckConstraint(condition=Q(status__in=ItemStatus.values), name="item_status_valid"),
            models.CheckConstraint(
                condition=Q(embedding_state__in=EmbeddingState.values), name="item_embedding_state_valid"
            ),
            models.CheckConstraint(
                condition=Q(honeypot=False)
                | (Q(final_source="gold") & (Q(final_label__isnull=False) | Q(final_tags__isnull=False))),
                name="item_honeypot_has_gold_label",
            ),
            models.CheckConstraint(
                condition=Q(final_label__isnull=True) | Q(final_tags__isnull=True),
                name="item_label_or_tags",
                violation_error_message="an item has a final label or a final tag set, not both.",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "status"], name="item_project_status"),
            models.Index(fields=["project"], condition=Q(honeypot=True), name="item_project_honeypots"),
            models.Index(fields=["project", "embedding_state"], name="item_project_embedding_state"),
            models.Index(fields=["project", "finalized_at"], name="item_project_finalized"),
        ]

    def __str__(self) -> str:
        return f"{self.project_id}:{self.external_id}"


#: Items with a final answer: a label (single-label projects) or a tag set (multi-label; ``[]``, the
#: empty set, counts). The one filter for "labelled for good" on every read of either task type.
DECIDED = Q(final_label__isnull=False) | Q(final_tags__isnull=False)


class ItemRevision(models.Model):
    """An earlier text of an item, kept when a push changed it while the item had annotations,
    leases or a final label: the annotations given for it (``Annotation.item_revision``) are
    history and the export shows them with this text on request."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="revisions")
    revision = models.PositiveIntegerField()
    text = models.TextField()
    text_hash = models.CharField(max_length=32)
    replaced_at = models.DateTimeField()

    class Meta:
        ordering = ["item", "revision"]
        constraints = [models.UniqueConstraint(fields=["item", "revision"], name="item_revision_unique")]

    def __str__(self) -> str:
        return f"revision {self.revision} of item {self.item_id}"


class CurrentManager(models.Manager):
    """Rows given for the item's current text only (``superseded_at`` unset): every read of the
    labelling, consensus, aggregation, quality, export and training code sees these. The model's
    ``all_revisions`` manager sees the history too."""

    def get_queryset(self):
        return super().get_queryset().filter(superseded_at__isnull=True)


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    created_at = models.DateTimeField(auto_now_add=True)
    # Quality control: set when the member's honeypot accuracy fell under the project's minimum
    # (``next`` then answers ``paused`` with ``pause_reason``); cleared by an admin's reinstatement,
    # which also sets ``reinstated_at``: only honeypot answers given after it count from then on.
    paused_at = models.DateTimeField(null=True, blank=True)
    pause_reason = models.CharField(max_length=500, blank=True, db_default="")
    reinstated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "user"]
        constraints = [
            models.UniqueConstraint(fields=["user", "project"], name="membership_unique_user_project"),
            models.CheckConstraint(condition=Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.role}) in {self.project}"


class IngestFormat(models.TextChoices):
    JSON = "json", "JSON array"
    JSONL = "jsonl", "JSON Lines"
    CSV = "csv", "CSV"


class IngestBatch(models.Model):
    """One accepted push of records into a project's pool (an audit trail and a job to follow)."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed by a worker"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="ingest_batches")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    format = models.CharField(max_length=8, choices=IngestFormat.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    records = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    # Items of this batch left waiting for an embedding (new or changed text, none pushed).
    awaiting_embedding = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    # Drift of this push against the items the project held before it (``acquisition.drift``):
    # ``{}`` while pending, then ``{"status": "done" | "no_reference", ...}``. ``drift_items``: a sample
    # of the created or changed items (little-endian int64 ids) the check compares.
    drift = models.JSONField(default=dict, blank=True)
    drift_items = models.BinaryField(default=b"", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["project", "-created_at"], name="ingest_batch_project_recent")]

    def __str__(self) -> str:
        return f"ingest #{self.pk} into project {self.project_id} ({self.status})"


class QueueReason(models.TextChoices):
    ACQUISITION = "acquisition", "Chosen by the acquisition strategy"
    EXPLORATION = "exploration", "Uniform random exploration sample"
    COLD_START = "cold_start", "Diverse cold-start sample (no model yet)"
    EXTRA_LABEL = "extra_label", "Disputed item asking for one more label"
    FALLBACK = "fallback", "Item order (no scoring run yet)"


class QueueEntry(models.Model):
    """One item waiting in its project's annotation queue.

    ``priority`` orders the queue (highest first). ``labels_needed`` is how many distinct
    annotators the item should get in total; ``labels_taken`` counts the live leases plus the
    submitted annotations, so "has an open slot" is one indexed comparison. A scoring run
    replaces the untouched entries of a project atomically (``labels_taken == 0``) and keeps
    those that annotators have started.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="queue_entries")
    item = models.OneToOneField(Item, on_delete=models.CASCADE, related_name="queue_entry")
    priority = models.FloatField()
    # Raw score of the strategy that chose the item (for display and audits).
    score = models.FloatField(null=True, blank=True)
    strategy = models.CharField(max_length=32, blank=True)
    reason = models.CharField(max_length=16, choices=QueueReason.choices, default=QueueReason.ACQUISITION)
    run = models.ForeignKey(
        "acquisition.ScoringRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="queue_entries"
    )
    # The current model's guess, shown to annotators only when they ask for suggestions.
    suggested_label = models.ForeignKey(LabelClass, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    suggested_confidence = models.FloatField(null=True, blank=True)
    # Multi-label: the model's tag set and per-tag probabilities ``{"tags": [label_id], "p": {id: p}}``.
    suggested_tags = models.JSONField(null=True, blank=True)
    labels_needed = models.PositiveSmallIntegerField()
    labels_taken = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "-priority", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(labels_needed__gte=1), name="queue_labels_needed_positive"),
            models.CheckConstraint(
                condition=Q(labels_taken__lte=models.F("labels_needed")), name="queue_taken_at_most_needed"
            ),
            models.CheckConstraint(condition=Q(reason__in=QueueReason.values), name="queue_reason_valid"),
        ]
        indexes = [
            models.Index(fields=["project", "-priority", "id"], name="queue_project_priority"),
            # The next-item query: open entries only, in serving order.
            models.Index(
                fields=["project", "-priority", "id"],
                condition=Q(labels_taken__lt=models.F("labels_needed")),
                name="queue_project_open",
            ),
        ]

    def __str__(self) -> str:
        return f"queue entry of item {self.item_id} ({self.priority:.4f})"


class AssignmentStatus(models.TextChoices):
    LEASED = "leased", "Leased"
    SUBMITTED = "submitted", "Submitted"
    SKIPPED = "skipped", "Skipped"
    EXPIRED = "expired", "Lease expired"


class Assignment(models.Model):
    """An item handed to one annotator: a lease that ends in a submission, a skip or expiry.

    One row per (item, annotator): an annotator never gets the same item twice."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="assignments")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="assignments")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    status = models.CharField(max_length=16, choices=AssignmentStatus.choices, default=AssignmentStatus.LEASED)
    leased_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    skip_reason = models.CharField(max_length=500, blank=True)
    # Set when a push changed the item's text: the lease showed an older text (a submit on it is
    # refused) and the row is history (``CurrentManager``).
    superseded_at = models.DateTimeField(null=True, blank=True)

    all_revisions = models.Manager()
    objects = CurrentManager()

    class Meta:
        ordering = ["-leased_at", "-id"]
        default_manager_name = "objects"
        base_manager_name = "all_revisions"
        constraints = [
            models.UniqueConstraint(
                fields=["item", "user"], condition=Q(superseded_at__isnull=True), name="assignment_unique_item_user"
            ),
            models.CheckConstraint(condition=Q(status__in=AssignmentStatus.values), name="assignment_status_valid"),
        ]
        indexes = [
            models.Index(fields=["project", "user", "status"], name="assignment_project_user"),
            models.Index(fields=["status", "expires_at"], name="assignment_status_expiry"),
        ]

    def __str__(self) -> str:
        return f"assignment {self.pk}: item {self.item_id} to user {self.user_id} ({self.status})"


#: The worker an annotation counts for: its annotator's id, kept after the account is deleted.
ANNOTATOR_KEY = Coalesce("user_id", "former_user_id", output_field=models.BigIntegerField())


def deleted_user_name(user_id: int) -> str:
    """How the annotations of a deleted account name their annotator."""
    return f"deleted-user-{user_id}"


class Annotation(models.Model):
    """One annotator's label for one item's current text. One per (item, annotator); changeable
    until final.

    Annotations outlive their annotator's account: deleting a user sets ``user`` to null and keeps
    the old id in ``former_user_id`` (``annotator_key``: still one distinct worker for the
    aggregation; ``annotator_name``: ``deleted-user-<id>``). Annotations given for an older text of
    the item are kept as history (``superseded_at``, ``item_revision``) and hidden from
    ``objects``."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="annotations")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="annotations")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="annotations"
    )
    former_user_id = models.PositiveBigIntegerField(null=True, blank=True)
    assignment = models.OneToOneField(
        Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="annotation"
    )
    # RESTRICT: a label in use cannot be deleted on its own, but deleting the project takes both.
    # Single-label projects fill ``label``; multi-label projects ``tags`` (sorted label ids, ``[]``
    # for the empty set), never both (``annotation.task_types``).
    label = models.ForeignKey(LabelClass, null=True, blank=True, on_delete=models.RESTRICT, related_name="annotations")
    tags = models.JSONField(null=True, blank=True)
    time_spent_ms = models.PositiveIntegerField(default=0)
    item_revision = models.PositiveIntegerField(default=1, db_default=1)
    superseded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    all_revisions = models.Manager()
    objects = CurrentManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        default_manager_name = "objects"
        base_manager_name = "all_revisions"
        constraints = [
            models.UniqueConstraint(
                fields=["item", "user"], condition=Q(superseded_at__isnull=True), name="annotation_unique_item_user"
            ),
            models.CheckConstraint(
                condition=(Q(label__isnull=False) & Q(tags__isnull=True))
                | (Q(label__isnull=True) & Q(tags__isnull=False)),
                name="annotation_label_or_tags",
                violation_error_message="an annotation has a label or a tag set, exactly one of them.",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "user", "-created_at"], name="annotation_project_user"),
            models.Index(fields=["project", "-updated_at"], name="annotation_project_recent"),
        ]

    def __str__(self) -> str:
        answer = self.label_id if self.tags is None else self.tags
        return f"{self.annotator_key} labelled item {self.item_id} as {answer}"

    @property
    def annotator_key(self) -> int | None:
        return self.user_id if self.user_id is not None else self.former_user_id

    @property
    def annotator_name(self) -> str:
        if self.user_id is not None:
            return self.user.get_username()
        return deleted_user_name(self.former_user_id)


# --- consensus: aggregation snapshots, annotator quality, expert review ------------------------


#: Why an item went to review (``routing.ReviewReason``, where the rules that pick one live).
ReviewReason = models.TextChoices(
    "ReviewReason", [(reason.name, (reason.value, reason.label)) for reason in routing.ReviewReason]
)


class ReviewStatus(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVED = "resolved", "Resolved"
    CANCELLED = "cancelled", "Cancelled (a push changed the item's text)"


class ReviewTask(models.Model):
    """An item sent to expert review, and the reviewer's decision once made.

    At most one open task per item (partial unique constraint). ``priority`` is the value of
    deciding it (one minus the margin of the item's posterior): disputed items come first.
    ``posterior`` is ``{label_id: p}`` (entries of at least 0.001), refreshed by each aggregation
    while the task is open. ``claimed_by``/``claimed_until``: the reviewer who took it through
    ``review_next`` and until when no one else is handed it."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="review_tasks")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="review_tasks")
    reason = models.CharField(max_length=16, choices=ReviewReason.choices)
    status = models.CharField(max_length=16, choices=ReviewStatus.choices, default=ReviewStatus.OPEN)
    priority = models.FloatField(default=0.0)
    posterior = models.JSONField(default=dict, blank=True)
    model_label = models.ForeignKey(LabelClass, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_confidence = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    claimed_until = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    decision = models.ForeignKey(LabelClass, null=True, blank=True, on_delete=models.RESTRICT, related_name="+")
    # Multi-label: the reviewer's tag set (sorted label ids), the tags in dispute when the task was
    # opened or last refreshed (``posterior`` is then ``{label_id: P(tag present)}``) and the model's
    # suggested tag set.
    decision_tags = models.JSONField(null=True, blank=True)
    disputed_tags = models.JSONField(null=True, blank=True)
    model_tags = models.JSONField(null=True, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["item"], condition=Q(status="open"), name="review_one_open_per_item"),
            models.CheckConstraint(condition=Q(status__in=ReviewStatus.values), name="review_status_valid"),
            models.CheckConstraint(condition=Q(reason__in=ReviewReason.values), name="review_reason_valid"),
            models.CheckConstraint(
                condition=Q(status__in=["open", "cancelled"])
                | ((Q(decision__isnull=False) | Q(decision_tags__isnull=False)) & Q(resolved_at__isnull=False)),
                name="review_resolved_has_decision",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "status", "-priority", "created_at"], name="review_project_next"),
            models.Index(fields=["project", "status", "-created_at"], name="review_project_recent"),
        ]

    def __str__(self) -> str:
        return f"review {self.pk} of item {self.item_id} ({self.status})"


class AnnotatorQuality(models.Model):
    """One annotator's figures from the latest aggregation of a project, with the answer weights
    the submit path uses (``n_classes`` x ``n_classes`` little-endian float32, rows = true class, in
    the class order of the latest ``AgreementSnapshot.label_ids``): the aggregator's calibrated
    ``exp(τ E[log π])`` (``HierarchicalDawidSkene.answer_weights_``; rows need not sum to 1).
    ``ds_accuracy`` is the prior-weighted accuracy Σ_j θ_j π^jj of the posterior-mean matrix."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="annotator_quality")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    n_annotations = models.PositiveIntegerField(default=0)
    ds_accuracy = models.FloatField(null=True, blank=True)
    gold_accuracy = models.FloatField(null=True, blank=True)
    gold_n = models.PositiveIntegerField(default=0)
    agreement_rate = models.FloatField(null=True, blank=True)
    n_classes = models.PositiveIntegerField()
    confusion = models.BinaryField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["project", "user"]
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="annotator_quality_unique")]

    def __str__(self) -> str:
        return f"quality of user {self.user_id} in project {self.project_id}"


class AgreementSnapshot(models.Model):
    """The figures of one aggregation of a project (the newest 100 per project are kept).

    ``project_kappa``: mean pairwise Cohen's kappa over the pairs of annotators sharing at least 10
    items, weighted by shared items. ``kappa_matrix``: ``{"annotators": [username], "values":
    [[kappa | null]]}``. ``annotators``: ``[{username, n_annotations, ds_accuracy, gold_accuracy,
    gold_n, agreement_rate}]``. ``label_ids``/``priors``: the class order and the Dawid-Skene class
    priors the submit path uses. ``changes``: what the re-routing did."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="agreement_snapshots")
    computed_at = models.DateTimeField()
    method = models.CharField(max_length=32, default="dawid_skene")
    project_kappa = models.FloatField(null=True, blank=True)
    fleiss_kappa = models.FloatField(null=True, blank=True)
    krippendorff_alpha = models.FloatField(null=True, blank=True)
    kappa_matrix = models.JSONField(default=dict)
    annotators = models.JSONField(default=list)
    policy = models.CharField(max_length=16)
    label_ids = models.JSONField(default=list)
    priors = models.JSONField(default=list)
    n_annotations = models.PositiveIntegerField(default=0)
    n_items = models.PositiveIntegerField(default=0)
    n_overlap_items = models.PositiveIntegerField(default=0, help_text="Items with two or more labels.")
    n_gold = models.PositiveIntegerField(default=0)
    n_items_final = models.PositiveIntegerField(default=0)
    ds_iterations = models.PositiveIntegerField(default=0)
    changes = models.JSONField(default=dict)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["project", "-computed_at", "-id"]
        indexes = [models.Index(fields=["project", "-computed_at"], name="agreement_project_recent")]

    def __str__(self) -> str:
        return f"agreement of project {self.project_id} at {self.computed_at:%Y-%m-%d %H:%M:%S}"


class AggregationState(models.Model):
    """The debounce flag of a project's aggregation task (see ``services.aggregation``)."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, primary_key=True, related_name="+")
    requested_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"aggregation state of project {self.project_id}"
