"""Request a scoring run of a project (optionally after training a model), on a worker or here."""

from django.core.management.base import BaseCommand, CommandError

from acquisition.services.scoring import scoring_run_create
from annotation.models import Project
from quorum.errors import ServiceError

from ...services.scoring import scoring_request, scoring_run_execute
from ...services.training import model_train


class Command(BaseCommand):
    help = "Score a project's pool and refill its annotation queue (optionally train a model first)."

    def add_arguments(self, parser):
        parser.add_argument("project_id", type=int)
        parser.add_argument("--train", action="store_true", help="train a committee on the final labels first")
        parser.add_argument("--sync", action="store_true", help="run here instead of enqueueing for a worker")

    def handle(self, *args, project_id, train, sync, **options):
        project = Project.objects.filter(pk=project_id).first()
        if project is None:
            raise CommandError(f"project {project_id} does not exist")
        if train:
            try:
                version = model_train(project=project)
            except ServiceError as exc:
                raise CommandError(str(exc.detail)) from exc
            self.stdout.write(f"trained model v{version.version} ({version.status}) on {version.n_labels} labels")
        if sync:
            run = scoring_run_create(project=project, trigger="manual")
            if run is None:
                raise CommandError("a scoring run of this project is already pending or running")
            result = scoring_run_execute(run.pk, chunk_size=2**62)  # inline: no worker needed
            self.stdout.write(f"scoring run {run.pk}: {result}")
            return
        run = scoring_request(project=project, trigger="manual")
        if run is None:
            raise CommandError("a scoring run of this project is already pending or running")
        self.stdout.write(f"scoring run {run.pk} requested")
