"""Settings for the test suite: the project's settings with test-only secrets, fast password
hashing, and throw-away directories for the SQLite test database and the filesystem broker.

``DATABASE_URL`` and ``CELERY_BROKER_URL`` still come from the environment, so the same suite runs
on SQLite + the embedded broker (default) and on PostgreSQL + Redis (CI).
"""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-not-used-anywhere-else")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
# One scratch directory per test run, shared with the worker processes the tests start
# (they inherit the environment variable).
os.environ.setdefault("QUORUM_TEST_DIR", tempfile.mkdtemp(prefix="quorum-tests-"))
os.environ.setdefault("QUORUM_DATA_DIR", os.environ["QUORUM_TEST_DIR"])

from quorum.settings import *  # noqa: E402,F403
from quorum.settings import DATA_DIR, DATABASES, STATIC_ROOT  # noqa: E402

STATIC_ROOT.mkdir(parents=True, exist_ok=True)

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not an in-memory database, so that worker processes can open it too.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-quorum.sqlite3")}
