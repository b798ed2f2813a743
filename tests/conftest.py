import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from annotation import ports, services
from annotation.models import Role
from annotation.services.projects import LabelSpec
from loop.supply import ScoringSupply


@pytest.fixture
def make_user(db):
    def make(username: str, *, staff: bool = False, superuser: bool = False, password: str = "pw-12345-quorum"):
        return get_user_model().objects.create_user(
            username=username, password=password, is_staff=staff or superuser, is_superuser=superuser
        )

    return make


@pytest.fixture
def admin_user(make_user):
    return make_user("alice", superuser=False, staff=True)


@pytest.fixture
def project(admin_user):
    labels = [LabelSpec("refund"), LabelSpec("card_lost"), LabelSpec("other")]
    return services.project_create(user=admin_user, name="Support", labels=labels, embedding_dim=4)


@pytest.fixture
def api_for():
    def client(user):
        api = APIClient()
        if user is not None:
            api.force_authenticate(user)
        return api

    return client


@pytest.fixture
def admin_api(api_for, admin_user):
    return api_for(admin_user)


@pytest.fixture
def member(make_user, project):
    def make(username: str, role: str = Role.ANNOTATOR):
        user = make_user(username)
        services.membership_set(project=project, username=username, role=role)
        return user

    return make


@pytest.fixture
def make_project(admin_user):
    """Another project, created through the service (its creator becomes its admin)."""

    def make(name: str = "Other", *, user=None, labels=("x", "y"), **settings):
        settings.setdefault("embedding_dim", 4)
        return services.project_create(
            user=user or admin_user, name=name, labels=[LabelSpec(label) for label in labels], **settings
        )

    return make


@pytest.fixture
def token_api(db):
    """An API client that authenticates with a DRF token (as scripts do), not force_authenticate."""
    from rest_framework.authtoken.models import Token

    def client(user):
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
        return api

    return client


@pytest.fixture
def client_for():
    """``client_for(user, **client_options)`` -> a Django test client logged in as ``user`` (None: anonymous)."""
    from django.test import Client

    def make(user, **kwargs):
        client = Client(**kwargs)
        if user is not None:
            client.force_login(user)
        return client

    return make


@pytest.fixture
def hostile_project(make_user, make_project):
    """(creator, project) for escaping checks: markup in the project's name, a label and its instructions."""
    user = make_user("esc")
    project = make_project("<b>bold</b>", user=user, labels=['say "hi"</script><script>alert(1)</script>', "ok"])
    project.instructions = "<img src=x onerror=alert(1)>"
    project.save()
    return user, project


class RecordingSupply:
    """A queue supply (``annotation.ports.QueueSupply``) for tests: whether a model fill started or
    runs is the loop's real answer (``loop.supply.ScoringSupply``: scoring runs in the database),
    but a request for a fill is only recorded (``requests``: project ids) and starts nothing."""

    def __init__(self):
        self._real = ScoringSupply()
        self.requests: list[int] = []

    def started(self, project) -> bool:
        return self._real.started(project)

    def running(self, project) -> bool:
        return self._real.running(project)

    def request(self, project) -> bool:
        self.requests.append(project.pk)
        return False


@pytest.fixture
def install_supply():
    """``install_supply(supply)`` plugs ``supply`` in as the queue's supply (``annotation.ports``)
    for this test and returns it; the supply installed before comes back afterwards."""
    previous = ports.queue_supply()

    def install(supply):
        ports.install(supply=supply)
        return supply

    yield install
    ports.install(supply=previous)


@pytest.fixture
def recording_supply(install_supply):
    """A ``RecordingSupply`` installed for this test: refills are recorded, never requested."""
    return install_supply(RecordingSupply())
