"""The model side's data. For now: item embeddings.

Embeddings live in their own table, one row per item, as little-endian float32 bytes:
- the ``Item`` rows that listing and queue queries scan stay narrow (a 384-d vector is 1.5 kB);
- every worker that can reach the database can read them (no shared file system needed);
- ``(project, updated_at)`` is indexed, so a scoring run loads only the rows written since
  its previous run instead of reloading a million vectors.
"""

import numpy as np
from django.conf import settings
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


class ModelVersion(models.Model):
    """A trained model of a project (a committee of heads on the frozen embeddings, or a
    fine-tuned encoder + head), with its lineage, metrics and promotion decision."""

    class Status(models.TextChoices):
        TRAINING = "training", "Training"
        CANDIDATE = "candidate", "Trained, awaiting the gate"
        CURRENT = "current", "Current"
        REJECTED = "rejected", "Rejected by the gate"
        RETIRED = "retired", "Replaced by a newer version"
        FAILED = "failed", "Training failed"

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="model_versions")
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.TRAINING)
    kind = models.CharField(max_length=32, default="heads", help_text="heads | finetune")
    # The label set in class order when trained (a model's column j is labels[j]).
    label_names = models.JSONField(default=list)
    hyperparameters = models.JSONField(default=dict)
    seed = models.BigIntegerField(default=0)
    n_labels = models.PositiveIntegerField(default=0)
    label_snapshot_hash = models.CharField(max_length=64, blank=True)
    code_version = models.CharField(max_length=64, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    weights = models.FileField(upload_to="models/", blank=True)
    train_seconds = models.FloatField(null=True, blank=True)
    decision = models.TextField(blank=True, help_text="Why the gate promoted or rejected this version.")
    # Lineage: the job that trained it, the version that was current then (the gate's opponent),
    # the label snapshot (finalised up to ``labels_as_of``) and its train / evaluation split.
    job = models.ForeignKey(
        "TrainingJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="model_versions"
    )
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    labels_as_of = models.DateTimeField(null=True, blank=True)
    n_train = models.PositiveIntegerField(default=0)
    n_eval = models.PositiveIntegerField(default=0)
    eval_set_hash = models.CharField(max_length=64, blank=True)
    # Ids of the held-out items (little-endian int64): with ``labels_as_of`` they say which labels the
    # version was trained on, so later versions are compared with it only on labels it never saw.
    eval_items = models.BinaryField(default=b"", blank=True)
    device = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="model_version_unique_per_project"),
            models.UniqueConstraint(
                fields=["project"], condition=models.Q(status="current"), name="model_version_one_current"
            ),
        ]

    def __str__(self) -> str:
        return f"model v{self.version} of project {self.project_id} ({self.status})"


class Job(models.Model):
    """What scoring runs and training jobs share: a status that goes ``pending`` → ``running`` →
    ``succeeded`` | ``failed``, timings, the error of a failure, the moments it was created, started
    and finished, and its heartbeat. Each concrete job keeps a partial unique constraint that allows
    one ``ACTIVE`` (pending or running) row per project; ``acquisition.services.jobs`` writes them."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    ACTIVE = (Status.PENDING, Status.RUNNING)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The last sign of life: when the job's message was sent (pending), then every few seconds while
    # a worker runs it (``loop.heartbeat``). An active job silent for longer than
    # ``QUORUM_JOB_HEARTBEAT_TIMEOUT`` (running) or ``QUORUM_JOB_PENDING_TIMEOUT`` (pending) is lost
    # (``acquisition.services.jobs``).
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-id"]


class ScoringRun(Job):
    """One scoring of a project's pool that (re)fills its annotation queue: a job with progress.

    At most one run per project is pending or running at a time (a partial unique constraint),
    so two runs never interleave their queue writes."""

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="scoring_runs")
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="scoring_runs"
    )
    strategy = models.CharField(max_length=32)
    trigger = models.CharField(max_length=32, blank=True, help_text="ingest | low_queue | retrain | manual")
    n_items = models.PositiveIntegerField(default=0, help_text="Candidate items scored.")
    n_chunks = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    selected = models.PositiveIntegerField(default=0, help_text="Entries written to the queue.")
    explored = models.PositiveIntegerField(default=0, help_text="Of which uniform random exploration.")
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds per phase.")

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project"],
                condition=models.Q(status__in=["pending", "running"]),
                name="scoring_run_one_active_per_project",
            ),
        ]
        indexes = [models.Index(fields=["project", "-created_at"], name="scoring_run_project_recent")]

    def __str__(self) -> str:
        return f"scoring run {self.pk} of project {self.project_id} ({self.status})"

    @property
    def progress(self) -> float:
        """Fraction done, 0..1 (for progress bars)."""
        if self.status == self.Status.SUCCEEDED:
            return 1.0
        return min(1.0, self.chunks_done / self.n_chunks) if self.n_chunks else 0.0


class TrainingJob(Job):
    """One turn of the loop: train a model version, evaluate it, gate it, and when it is promoted
    re-score the pool and refill the queue. A job with a stage, progress and timings.

    At most one job per project is pending or running (a partial unique constraint): that is the
    debounce of the retrain trigger."""

    class Stage(models.TextChoices):
        QUEUED = "queued", "Queued"
        TRAIN = "train", "Training"
        EVALUATE = "evaluate", "Evaluating"
        PROMOTE = "promote", "Gate"
        SCORE = "score", "Re-scoring the pool"
        DONE = "done", "Done"

    # Share of the job done when a stage starts (for progress bars).
    STAGE_PROGRESS = {"queued": 0.0, "train": 0.05, "evaluate": 0.6, "promote": 0.7, "score": 0.75, "done": 1.0}

    project = models.ForeignKey("annotation.Project", on_delete=models.CASCADE, related_name="training_jobs")
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.QUEUED)
    trigger = models.CharField(max_length=32, help_text="labels | manual")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    mode = models.CharField(max_length=16, default="heads", help_text="heads | finetune (as requested)")
    n_new_labels = models.PositiveIntegerField(default=0, help_text="Final labels since the previous model.")
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    scoring_run = models.ForeignKey(ScoringRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    outcome = models.CharField(max_length=16, blank=True, help_text="promoted | rejected")
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds per stage.")

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project"],
                condition=models.Q(status__in=["pending", "running"]),
                name="training_job_one_active_per_project",
            ),
        ]
        indexes = [models.Index(fields=["project", "-created_at"], name="training_job_project_recent")]

    def __str__(self) -> str:
        return f"training job {self.pk} of project {self.project_id} ({self.status}, {self.stage})"

    @property
    def progress(self) -> float:
        """Fraction done, 0..1; while re-scoring, the scoring run's own progress fills the last quarter."""
        if self.status == self.Status.SUCCEEDED:
            return 1.0
        base = self.STAGE_PROGRESS.get(self.stage, 0.0)
        if self.stage == self.Stage.SCORE and self.scoring_run_id and self.scoring_run is not None:
            return base + 0.25 * self.scoring_run.progress
        return base


class TaskStat(models.Model):
    """Counters of the Celery tasks every worker ran (written by ``quorum.celery``'s task signals, one
    ``UPDATE`` per task), so ``/metrics`` reports task durations and failures of all workers, on any
    machine, from the database they share."""

    task = models.CharField(max_length=200)
    outcome = models.CharField(max_length=16, help_text="succeeded | failed | retried")
    count = models.PositiveBigIntegerField(default=0)
    seconds_sum = models.FloatField(default=0.0)
    seconds_max = models.FloatField(default=0.0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["task", "outcome"]
        constraints = [models.UniqueConstraint(fields=["task", "outcome"], name="task_stat_unique")]

    def __str__(self) -> str:
        return f"{self.task} {self.outcome}: {self.count}"
