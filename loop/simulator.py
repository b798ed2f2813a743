"""The loop, simulated: real services and tasks, simulated annotators who answer from the ground truth.

One run (``simulate_run``) is one project with one strategy and one seed:

1. the dataset's train split becomes the pool, pushed through ``items_ingest`` in an order shuffled by
   the seed (so seeds differ in item ids, hence in cold-start and exploration picks), with its
   embeddings (encoded once by the project's encoder and cached on disk);
2. rounds: every simulated annotator asks ``assignment_next`` and answers through ``annotation_submit``
   until nobody gets an item; then the :class:`InProcessWorker` runs the Celery tasks those calls sent,
   in order — the debounced aggregation (Dawid-Skene), the retrain trigger, the training job (fit,
   evaluate, gate, re-score) and scoring runs that refill the queue;
3. after each training job the current model is evaluated on the dataset's test split and a point
   ``{labels, annotations, accuracy, macro_f1, version, outcome}`` is added to the learning curve.

``labels`` counts the items with a final label (what a budget buys); ``annotations`` the answers the
annotators gave (``labels`` × ``labels_per_item`` when nothing needs an extra label).

Annotators are right with probability ``accuracy`` and otherwise pick one of the other classes
uniformly at random. On a dataset of tag sets (``LabelledDataset.multi_label``) the project is a
multi-label one and the annotators are ``tag_simulation.SimulatedTagger``s, who leave out each true tag
with ``tag_miss_rate`` and add ``tag_add_rate`` wrong tags per answer on average; the points then hold
subset accuracy (``accuracy``), micro- and macro-F1 and the Hamming loss of the model's tag sets. The project is set so that consensus never waits for an expert (no review, no
extra labels once the project kappa is known): the labels are what the aggregator makes of the answers.
Until 20 items carry two labels the consensus rule sends disagreements to review, and no simulated
expert resolves them: those items count as annotated but not as labels.

``RunConfig.retrain_after`` (default: the batch) spaces the retrains, hence the curve's points: a
strategy that ignores the model (``random``) picks the same way whatever the spacing, so its reference
curve may be measured at a fraction of the cost. ``RunConfig.semi_supervised`` sets ``QUORUM_SEMI_SUPERVISED`` for the run (``None``: the setting as it
is), so one process can compare the semi-supervised head with the plain one. ``label_error_cap`` sets
``QUORUM_LABEL_ERROR_CAP``: the label-error check after each retrain only opens review tasks, which no
simulated reviewer decides and which leave every label final, so it changes no curve; ``0`` skips its
out-of-fold fits (up to 20 s a round on two cores), ``None`` keeps the setting.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np
from celery.app.task import Task
from celery.result import AsyncResult
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test.utils import override_settings

from acquisition import evaluation
from acquisition.datasets import LabelledDataset
from acquisition.models import ModelVersion, TrainingJob
from acquisition.services.gate import probabilities_in_order
from acquisition.services.registry import model_load
from annotation import services as annotation_services
from annotation.ingest_records import CleanRecord, text_digest
from annotation.models import Annotation, Item, Project, Role
from annotation.services.projects import LabelSpec

from .tag_simulation import SimulatedTagger, tag_point

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- in-process worker
class InProcessWorker:
    """Runs Celery tasks in this process, in the order they were sent, when ``run_until_idle`` is called.

    While active, ``Task.apply_async`` (and so ``delay``) records the call as a broker would, instead
    of sending it; ``run_until_idle`` executes the recorded tasks with ``Task.apply`` (the worker's
    code path, errors raised), including those they send in turn. Countdowns are not waited for: the
    debounce still holds, as only the first request of a burst sends the task.
    """

    def __init__(self) -> None:
        self.pending: deque = deque()
        self.executed: Counter = Counter()

    def __enter__(self) -> InProcessWorker:
        self._original = Task.apply_async
        worker = self

        def apply_async(task, args=None, kwargs=None, **options):
            worker.pending.append((task, tuple(args or ()), dict(kwargs or {})))
            return AsyncResult(str(uuid.uuid4()))

        Task.apply_async = apply_async
        return self

    def __exit__(self, *exc) -> None:
        Task.apply_async = self._original

    def run_until_idle(self, limit: int = 10_000) -> int:
        ran = 0
        while self.pending:
            if ran >= limit:
                raise RuntimeError(f"more than {limit} tasks in one drain: a task keeps re-sending itself?")
            task, args, kwargs = self.pending.popleft()
            task.apply(args=args, kwargs=kwargs, throw=True)
            self.executed[task.name] += 1
            ran += 1
        return ran


# ---------------------------------------------------------------------------------- annotators
@dataclass
class SimulatedAnnotator:
    user: object
    accuracy: float
    n_classes: int
    rng: np.random.Generator

    def answer(self, truth) -> int:
        truth = int(truth)
        if self.accuracy >= 1.0 or self.rng.random() < self.accuracy:
            return truth
        wrong = int(self.rng.integers(self.n_classes - 1))
        return wrong + (wrong >= truth)


# ------------------------------------------------------------------------------------- one run
@dataclass
class RunConfig:
    strategy: str
    seed: int
    annotators: int = 3
    annotator_accuracy: float = 1.0
    labels_per_item: int = 1
    batch: int = 50
    budget: int = 2000
    exploration: float = 0.1
    encoder: str = ""
    retrain_after: int | None = None  # the project's retrain_after; None: ``batch``
    semi_supervised: bool | None = None  # QUORUM_SEMI_SUPERVISED for the run; None: the setting
    label_error_cap: int | None = None  # QUORUM_LABEL_ERROR_CAP for the run; None: the setting
    line: str = ""  # the name of the run's learning curve (default: the strategy)
    tag_miss_rate: float = 0.0  # multi-label datasets: chance an answer leaves out each true tag
    tag_add_rate: float = 0.0  # multi-label datasets: wrong tags added per answer, on average


@dataclass
class RunResult:
    strategy: str
    seed: int
    points: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    tasks: dict = field(default_factory=dict)
    project_id: int | None = None
    line: str = ""
    semi_supervised: bool | None = None
    budget: int | None = None

    def as_dict(self) -> dict:
        return {
            "strategy": self.strategy,
            "line": self.line or self.strategy,
            "semi_supervised": self.semi_supervised,
            "budget": self.budget,
            "seed": self.seed,
            "points": self.points,
            "seconds": round(self.seconds, 2),
            "tasks": self.tasks,
            "project_id": self.project_id,
        }


def _users(prefix: str, count: int):
    User = get_user_model()
    admin, _ = User.objects.get_or_create(username=f"{prefix}admin", defaults={"is_staff": True})
    annotators = [User.objects.get_or_create(username=f"{prefix}annotator{i + 1}")[0] for i in range(count)]
    return admin, annotators


def simulate_run(
    dataset: LabelledDataset,
    train_vectors: np.ndarray,
    test_vectors: np.ndarray,
    config: RunConfig,
    *,
    log=print,
) -> RunResult:
    """Drive one project through the loop until ``config.budget`` items have final labels (module docstring)."""
    overrides = {}
    if config.semi_supervised is not None:
        overrides["QUORUM_SEMI_SUPERVISED"] = bool(config.semi_supervised)
    if config.label_error_cap is not None:
        overrides["QUORUM_LABEL_ERROR_CAP"] = int(config.label_error_cap)
    with override_settings(**overrides):
        return _simulate_run(dataset, train_vectors, test_vectors, config, log=log)


def _simulate_run(
    dataset: LabelledDataset, train_vectors: np.ndarray, test_vectors: np.ndarray, config: RunConfig, *, log
) -> RunResult:
    started = time.perf_counter()
    result = RunResult(config.strategy, config.seed, line=config.line or config.strategy, budget=config.budget)
    result.semi_supervised = bool(settings.QUORUM_SEMI_SUPERVISED)
    name = result.line
    n_classes = len(dataset.categories)
    prefix = f"sim-{uuid.uuid4().hex[:6]}-"
    admin, users = _users(prefix, config.annotators)
    if config.labels_per_item > config.annotators:
        raise ValueError("labels_per_item cannot exceed the number of annotators")
    multi = bool(getattr(dataset, "multi_label", False))
    project = annotation_services.project_create(
        user=admin,
        name=f"simulation {dataset.name} {config.strategy} seed {config.seed}",
        labels=[LabelSpec(name) for name in dataset.categories],
        task_type="multi_label" if multi else "text_classification",
        acquisition_strategy=config.strategy,
        batch_size=config.batch,
        exploration_fraction=config.exploration,
        labels_per_item=config.labels_per_item,
        max_labels_per_item=config.labels_per_item,
        # consensus decides alone: no review, every complete item is final
        review_all_below_kappa=-1.0,
        review_disagreements_below_kappa=-1.0,
        min_consensus_confidence=0.0,
        retrain_after=config.retrain_after or config.batch,
        embedding_dim=int(train_vectors.shape[1]),
        **({"encoder": config.encoder} if config.encoder else {}),
    )
    result.project_id = project.pk
    for user in users:
        annotation_services.membership_set(project=project, username=user.username, role=Role.ANNOTATOR)
    rng = np.random.default_rng(config.seed)
    if multi:
        annotators = [
            SimulatedTagger(
                user, config.tag_miss_rate, config.tag_add_rate, n_classes, np.random.default_rng([config.seed, i])
            )
            for i, user in enumerate(users)
        ]
    else:
        annotators = [
            SimulatedAnnotator(user, config.annotator_accuracy, n_classes, np.random.default_rng([config.seed, i]))
            for i, user in enumerate(users)
        ]

    with InProcessWorker() as worker:
        order = rng.permutation(len(dataset.train))
        records = [
            CleanRecord(
                position=j,
                external_id=f"train-{i}",
                text=dataset.train.texts[i],
                text_hash=text_digest(dataset.train.texts[i]),
                metadata={},
                embedding=train_vectors[i].astype("<f4").tobytes(),
            )
            for j, i in enumerate(order)
        ]
        annotation_services.items_ingest(project=project, records=records, rejected=[], fmt="json", user=admin)
        worker.run_until_idle()
        truth = {
            pk: dataset.train.labels[int(external_id.removeprefix("train-"))]
            for pk, external_id in Item.objects.filter(project=project).values_list("pk", "external_id")
        }
        label_names = dataset.categories
        seen_jobs: set[int] = set()
        labelled_items = 0
        while labelled_items < config.budget:
            handed = _annotate_round(project, annotators, truth, label_names, config.budget - labelled_items)
            worker.run_until_idle()
            labelled_items = Annotation.objects.filter(project=project).values("item_id").distinct().count()
            new_points = _evaluate_jobs(project, seen_jobs, dataset, test_vectors)
            for point in new_points:
                point["annotations"] = Annotation.objects.filter(project=project).count()
                result.points.append(point)
                log(
                    f"  [{name} seed {config.seed}] {point['labels']:>5} labels  "
                    f"v{point['version']} {point['outcome']:<8}  test accuracy {point['accuracy']:.4f}  "
                    f"macro-F1 {point['macro_f1']:.4f}  ({time.perf_counter() - started:.0f} s)"
                )
            if handed == 0 and not new_points:
                log(f"  [{name} seed {config.seed}] the queue stays empty at {labelled_items} labels: stop")
                break
        result.tasks = dict(worker.executed)
    result.seconds = time.perf_counter() - started
    return result


def _annotate_round(project: Project, annotators, truth: dict, label_names: list[str], room: int) -> int:
    """Every annotator labels until nobody gets an item (or ``room`` new items were started)."""
    handed = 0
    started_items: set[int] = set()
    active = list(annotators)
    while active:
        for annotator in list(active):
            result = annotation_services.assignment_next(project=project, user=annotator.user)
            assignment = result.assignment
            if assignment is None or (assignment.item_id not in started_items and len(started_items) >= room):
                if assignment is not None:
                    annotation_services.assignment_skip(assignment_id=assignment.pk, user=annotator.user)
                active.remove(annotator)
                continue
            started_items.add(assignment.item_id)
            answer = annotator.answer(truth[assignment.item_id])
            if isinstance(answer, list):  # a tag set (``tag_simulation.SimulatedTagger``)
                annotation_services.annotation_submit(
                    assignment_id=assignment.pk, user=annotator.user, labels=[label_names[j] for j in answer]
                )
            else:
                annotation_services.annotation_submit(
                    assignment_id=assignment.pk, user=annotator.user, label=label_names[answer]
                )
            handed += 1
    return handed


def _evaluate_jobs(project: Project, seen: set[int], dataset: LabelledDataset, test_vectors: np.ndarray) -> list[dict]:
    """A learning-curve point per training job that finished since the last call: the current model
    after the job, on the test split."""
    points = []
    jobs = TrainingJob.objects.filter(project=project, status=TrainingJob.Status.SUCCEEDED).exclude(pk__in=seen)
    for job in jobs.select_related("model_version").order_by("pk"):
        seen.add(job.pk)
        current = ModelVersion.objects.filter(project=project, status=ModelVersion.Status.CURRENT).first()
        if current is None or job.model_version is None:
            continue
        if getattr(dataset, "multi_label", False):
            metrics = tag_point(model_load(current), current, test_vectors, dataset.test.labels, dataset.categories)
        else:
            probs = probabilities_in_order(model_load(current), current, test_vectors, dataset.categories)
            metrics = evaluation.classification_metrics(dataset.test.labels, probs, dataset.categories)
        points.append(
            {
                **{key: metrics[key] for key in ("micro_f1", "hamming_loss") if key in metrics},
                "labels": job.model_version.n_labels,
                "version": current.version,
                "trained_version": job.model_version.version,
                "outcome": job.outcome,
                "accuracy": metrics["accuracy"],
                "macro_f1": metrics["macro_f1"],
                "held_out": job.model_version.n_eval,
                "job_seconds": (job.timings or {}).get("total"),
                "train_seconds": (job.timings or {}).get("train"),
                "head": ((job.model_version.hyperparameters or {}).get("head") or {}).get("chosen"),
            }
        )
    return points
