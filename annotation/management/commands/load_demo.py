"""Create (or refresh) the demo project with the BANKING77 slice and a few demo users."""

import csv
import json
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from annotation import services
from annotation.ingest_records import RawRecord, validate_records
from annotation.models import Annotation, Item, Project, Role
from annotation.services.projects import LabelSpec
from annotation.services.queue import QueueCandidate, queue_replace

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"
DEMO_PROJECT = "Banking support intents (demo)"
DEMO_USERS = [
    # username, role, superuser
    ("admin", Role.ADMIN, True),
    ("reviewer", Role.REVIEWER, False),
    ("annotator1", Role.ANNOTATOR, False),
    ("annotator2", Role.ANNOTATOR, False),
    ("annotator3", Role.ANNOTATOR, False),
]
# Accuracy of each demo annotator in the simulated history (the rest of their answers are random).
HISTORY_ACCURACY = {"annotator1": 0.96, "annotator2": 0.92, "annotator3": 0.88}
INSTRUCTIONS = (
    "Each text is a message a customer sent to an online bank. Pick the intent that best describes "
    "what the customer wants. If two intents fit, pick the more specific one; if none fits, skip."
)


class Command(BaseCommand):
    help = "Load the demo project (2,002 BANKING77 queries, 77 intents) and demo users; safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--password", default="quorum-demo", help="password for every demo user")
        parser.add_argument(
            "--history",
            type=int,
            default=120,
            help="items the demo annotators label first (simulated, from the data's own categories) so that "
            "agreement, aggregation and the first model show on the dashboard at once; 0 for none",
        )

    def handle(self, *args, password: str, history: int = 120, **options):
        with transaction.atomic():
            users = self._users(password)
            project = self._project(users["admin"])
            for username, role, _ in DEMO_USERS:
                services.membership_set(project=project, username=username, role=role)
            report = self._items(project, users["admin"])
        self.stdout.write(
            f"Demo project #{project.pk} {project.name!r}: {report.created} items created, "
            f"{report.updated} updated, {report.unchanged} unchanged"
        )
        labelled = self._history(project, [users[name] for name in HISTORY_ACCURACY], history)
        if labelled:
            self.stdout.write(
                f"Simulated history: annotator1-3 labelled {labelled} items, two each "
                f"(right {', '.join(f'{a:.0%}' for a in HISTORY_ACCURACY.values())} of the time)"
            )
        self.stdout.write("Demo logins (username / password):")
        for username, role, _ in DEMO_USERS:
            self.stdout.write(f"  {username:<11} / {password}   ({role})")

    def _users(self, password):
        User = get_user_model()
        users = {}
        for username, _, superuser in DEMO_USERS:
            user, _ = User.objects.get_or_create(username=username)
            user.is_staff = user.is_superuser = superuser
            user.set_password(password)
            user.save()
            users[username] = user
        return users

    def _project(self, admin):
        project = Project.objects.filter(name=DEMO_PROJECT).first()
        if project is not None:
            return project
        categories = json.loads((DEMO_DIR / "banking77_categories.json").read_text())
        labels = [LabelSpec(name) for name in categories]
        # A small retrain threshold, so a model (and the learning curve) follows a few minutes of labelling.
        return services.project_create(
            user=admin, name=DEMO_PROJECT, labels=labels, instructions=INSTRUCTIONS, retrain_after=40
        )

    def _items(self, project, admin):
        with open(DEMO_DIR / "banking77_sample.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        raw = [
            RawRecord(
                line, {"external_id": row["external_id"], "text": row["text"], "metadata": {"source": "banking77"}}
            )
            for line, row in enumerate(rows, start=2)
        ]
        checked = validate_records(
            raw, embedding_dim=project.embedding_dim, max_text_chars=100_000, position_kind="line"
        )
        if checked.rejected:
            raise RuntimeError(f"demo data is invalid: {checked.rejected[:3]}")
        return services.items_ingest(project=project, records=checked.records, rejected=[], fmt="csv", user=admin)

    def _history(self, project, annotators, count: int) -> int:
        """The first ``count`` items of the pool (a seeded shuffle) go through the real queue: each
        annotator asks for the next item and answers from the data's category, right with its
        ``HISTORY_ACCURACY``. Only for a project nobody has labelled yet."""
        import random

        if count <= 0 or Annotation.objects.filter(project=project).exists():
            return 0
        with open(DEMO_DIR / "banking77_sample.csv", newline="", encoding="utf-8") as handle:
            truth = {row["external_id"]: row["category"] for row in csv.DictReader(handle)}
        names = list(project.labels.order_by("order").values_list("name", flat=True))
        rng = random.Random(77)
        items = list(Item.objects.filter(project=project).order_by("pk").values_list("pk", "external_id"))
        chosen = rng.sample(items, min(count, len(items)))
        queue_replace(
            project=project,
            candidates=[
                QueueCandidate(item_id=pk, priority=float(len(chosen) - i)) for i, (pk, _) in enumerate(chosen)
            ],
            strategy="demo-history",
        )
        external = dict(items)
        active = list(annotators)
        while active:
            for user in list(active):
                result = services.assignment_next(project=project, user=user)
                if result.assignment is None:
                    active.remove(user)
                    continue
                right = truth[external[result.assignment.item_id]]
                answer = right if rng.random() < HISTORY_ACCURACY[user.username] else rng.choice(names)
                services.annotation_submit(assignment_id=result.assignment.pk, user=user, label=answer)
        return len(chosen)
