"""Django settings for Quorum, read from the environment.

Defaults give the embedded set-up (SQLite file + kombu's filesystem broker under
``QUORUM_DATA_DIR``) that needs no server. Production sets ``DEBUG=0`` and must then
provide ``SECRET_KEY`` and ``ALLOWED_HOSTS`` explicitly: there is no insecure fallback.
See README.md ("Configuration") for every variable.
"""

import warnings
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("QUORUM_DATA_DIR", str(BASE_DIR / "var"))).resolve()

# --- security -------------------------------------------------------------------------
DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY (a long random string) for production, "
            "or DEBUG=1 for a local development run."
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"
    warnings.warn("SECRET_KEY not set: using an insecure development key (DEBUG=1)", stacklevel=1)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS is not set: list the host names this server answers to.")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Cookies travel over HTTPS only in production unless told otherwise (e.g. TLS ends at a proxy
# on the same host and the app is reached over plain HTTP on loopback).
SECURE_COOKIES = env_bool("SECURE_COOKIES", not DEBUG)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if env_bool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Served over HTTPS (QUORUM_TLS=1): plain HTTP is redirected to HTTPS, browsers are told to use HTTPS
# only (HSTS, QUORUM_HSTS_SECONDS, default a year) and cookies travel over HTTPS only. Health and
# metrics probes (healthz, readyz, metrics) stay reachable over plain HTTP inside the cluster.
QUORUM_TLS = env_bool("QUORUM_TLS", False)
if QUORUM_TLS:
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env_int("QUORUM_HSTS_SECONDS", 365 * 24 * 3600, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("QUORUM_HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_HSTS_PRELOAD = False
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Content-Security-Policy (django-csp): the pages load scripts, styles and images from this origin
# only; no inline script runs. The API docs pages (Swagger UI, ReDoc: vendor bundles that start from
# an inline script and style) are left out of the policy.
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/api/v1/docs/", "/api/v1/redoc/"],
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- applications ---------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "axes",
    "csp",
    "annotation",
    "acquisition",
    "loop",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "quorum.middleware.RejectUnsafeInput",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "quorum.urls"
WSGI_APPLICATION = "quorum.wsgi.application"
ASGI_APPLICATION = "quorum.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'quorum.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        # Writers queue up instead of failing ("database is locked"): BEGIN IMMEDIATE takes the
        # write lock when a transaction starts, WAL lets readers run beside the one writer.
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- auth -----------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    # First: refuses sign-ins (login page, admin) of a username + address locked out after too many
    # failures (django-axes), then the usual model backend.
    "quorum.security.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Login throttling (django-axes, failures counted in its database table, so every web process sees
# them): QUORUM_LOGIN_FAILURE_LIMIT failed sign-ins of one username from one address lock that pair
# out for QUORUM_LOGIN_LOCKOUT_MINUTES.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_DISABLE_ACCESS_LOG = True
AXES_FAILURE_LIMIT = env_int("QUORUM_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env_int("QUORUM_LOGIN_LOCKOUT_MINUTES", 15, minimum=1) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "quorum.security.lockout_response"
AXES_VERBOSE = False
if env_bool("BEHIND_TLS_PROXY", False):
    AXES_IPWARE_PROXY_COUNT = 1
    AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- cache -----------------------------------------------------------------------------
# Failed token authentications are counted here (quorum.security): per process by default;
# CACHE_URL (redis://host:6379/2) shares the counts between every web process of a deployment.
CACHE_URL = env_str("CACHE_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "quorum"}
    )
}

# --- i18n -----------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- static files ---------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(DATA_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(DATA_DIR / "media")))
MEDIA_URL = "media/"

# --- REST API -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "quorum.security.ThrottledTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "annotation.api.parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "EXCEPTION_HANDLER": "quorum.web.exception_handler",
    # Failed token authentications per client address (quorum.security.ThrottledTokenAuthentication).
    "DEFAULT_THROTTLE_RATES": {"auth_failure": env_str("QUORUM_AUTH_FAILURE_RATE", "20/min")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Quorum API",
    "DESCRIPTION": "Push pools of text, pull consensus labels, manage projects and members.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Every operation documents its error answers (400/401/403/404/409/429) with their body.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "quorum.schema.document_errors",
    ],
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "acquisition.models.TrainingJob.Status",
        "ModelVersionStatusEnum": "acquisition.models.ModelVersion.Status",
    },
}

# --- Celery ---------------------------------------------------------------------------
# Default broker: kombu's filesystem transport, so the embedded set-up runs a real worker
# process without any server. Production: redis://… or amqp://… (see README).
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://localhost//"
BROKER_DIR = Path(env_str("QUORUM_BROKER_DIR", str(DATA_DIR / "broker")))
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    for _folder in ("queue", "processed", "control", "results"):
        (BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    _default_result_backend = f"file://{BROKER_DIR / 'results'}"
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {}
    _default_result_backend = CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else "rpc://"
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or _default_result_backend
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_DEFAULT_QUEUE = "default"
# GPU work (encoding, fine-tuning) goes to its own queue so GPU machines only take GPU work:
# run `celery -A quorum worker -Q gpu` there and `-Q default` elsewhere (or `-Q default,gpu`).
CELERY_GPU_QUEUE = "gpu"
CELERY_TASK_ROUTES = {
    "acquisition.tasks.items_embed": {"queue": CELERY_GPU_QUEUE},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A broker outage never blocks a request for long, and workers outlive it:
# - publishing waits at most QUORUM_BROKER_TIMEOUT seconds per try (socket connect and read, the
#   connection's own timeout), with one quick retry (a pooled connection the broker dropped); what
#   could not be sent stays in the database (a pending job, the aggregation's request flag) and is
#   sent again by the next request or the workers' sweep (loop.services.sweep);
# - workers retry the connection for ever (Celery's default gives up after 100 tries) and keep
#   running tasks across a reconnect; their unacknowledged messages go back to the broker.
QUORUM_BROKER_TIMEOUT = env_float("QUORUM_BROKER_TIMEOUT", 2.0, minimum=0.1)
CELERY_BROKER_CONNECTION_TIMEOUT = QUORUM_BROKER_TIMEOUT
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# Left off (and set, so Celery 6's change of default does not flip it): on a lost broker connection
# Celery would cancel running late-acknowledged tasks, since their messages go back to the queue and
# run again. Here a duplicate finds its job taken or done and does nothing (heartbeats, conditional
# writes), while cancelling would throw away a fit or scoring run in progress for a broker restart.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    _redis_timeouts = {
        "socket_timeout": QUORUM_BROKER_TIMEOUT,
        "socket_connect_timeout": QUORUM_BROKER_TIMEOUT,
        "retry_on_timeout": False,
    }
    CELERY_BROKER_TRANSPORT_OPTIONS = {**CELERY_BROKER_TRANSPORT_OPTIONS, **_redis_timeouts}
    CELERY_REDIS_SOCKET_TIMEOUT = QUORUM_BROKER_TIMEOUT
    CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = QUORUM_BROKER_TIMEOUT
    CELERY_REDIS_RETRY_ON_TIMEOUT = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Quorum ---------------------------------------------------------------------------
# Largest request body accepted by the pool-ingest endpoint, in bytes.
QUORUM_INGEST_MAX_BYTES = env_int("QUORUM_INGEST_MAX_BYTES", 256 * 1024 * 1024, minimum=1)
# Most records accepted in one ingest request.
QUORUM_INGEST_MAX_RECORDS = env_int("QUORUM_INGEST_MAX_RECORDS", 500_000, minimum=1)
# Longest text accepted for one item, in characters.
QUORUM_MAX_TEXT_CHARS = env_int("QUORUM_MAX_TEXT_CHARS", 100_000, minimum=1)
# Sentence encoder used for new projects, and the length of its vectors.
QUORUM_ENCODER = env_str("QUORUM_ENCODER", "sentence-transformers/all-MiniLM-L6-v2")
QUORUM_EMBEDDING_DIM = env_int("QUORUM_EMBEDDING_DIM", 384, minimum=1)
# The deployment's own encoders a project may name besides the packaged ones and "hashing:<dim>":
# "name=dim" pairs, comma-separated (e.g. "/models/e5-base=768"). QUORUM_ENCODER is always allowed.
QUORUM_EXTRA_ENCODERS = {
    name.strip(): int(dim)
    for name, _, dim in (pair.rpartition("=") for pair in env_list("QUORUM_EXTRA_ENCODERS", []))
    if name.strip() and dim.strip().isdigit() and int(dim) >= 1
}
if len(QUORUM_EXTRA_ENCODERS) != len(env_list("QUORUM_EXTRA_ENCODERS", [])):
    raise ImproperlyConfigured("QUORUM_EXTRA_ENCODERS: each entry is name=dim with a positive dim")
QUORUM_EXTRA_ENCODERS.setdefault(QUORUM_ENCODER, QUORUM_EMBEDDING_DIM)
# Requests through the API (and the "train now" button) per project and hour, besides the one run
# or job that may be active: more get a 429 with Retry-After. The loop's own runs do not count.
QUORUM_SCORING_REQUESTS_PER_HOUR = env_int("QUORUM_SCORING_REQUESTS_PER_HOUR", 30, minimum=0)
QUORUM_TRAINING_REQUESTS_PER_HOUR = env_int("QUORUM_TRAINING_REQUESTS_PER_HOUR", 10, minimum=0)
# "auto" picks CUDA when present, else CPU; or "cpu", "cuda", "cuda:1"…
QUORUM_DEVICE = env_str("QUORUM_DEVICE", "auto")
# Items encoded per batch by the embedding task (one transaction per batch).
QUORUM_EMBED_BATCH_SIZE = env_int("QUORUM_EMBED_BATCH_SIZE", 256, minimum=1)
# Worker-local cache of embedding matrices and MSAL min distances (refreshed incrementally from
# the database; safe to delete at any time).
QUORUM_CACHE_DIR = Path(env_str("QUORUM_CACHE_DIR", str(DATA_DIR / "cache")))
# Seconds re-read before the cache's watermark on every refresh: covers writes that committed
# late (long transactions) and clock skew between the machines that write embeddings.
QUORUM_EMBEDDING_CACHE_OVERLAP = env_int("QUORUM_EMBEDDING_CACHE_OVERLAP", 300, minimum=0)
# Candidate items per scoring chunk: larger pools are split into chunks scored in parallel by a
# Celery chord; smaller ones are scored inline by one task.
QUORUM_SCORING_CHUNK = env_int("QUORUM_SCORING_CHUNK", 200_000, minimum=1)
# A scoring run pending or running longer than this is treated as lost and superseded.
QUORUM_SCORING_STALE_SECONDS = env_int("QUORUM_SCORING_STALE_SECONDS", 1800, minimum=1)
# A training job pending or running longer than this is treated as lost and superseded.
QUORUM_TRAINING_STALE_SECONDS = env_int("QUORUM_TRAINING_STALE_SECONDS", 3600, minimum=1)
# Heartbeats: a worker running a scoring run or training job marks it alive every
# QUORUM_JOB_HEARTBEAT_SECONDS; one silent for QUORUM_JOB_HEARTBEAT_TIMEOUT (its worker died) is
# superseded, and so is one still pending QUORUM_JOB_PENDING_TIMEOUT after its message was sent (sent
# again by the sweep first). The same pending timeout applies to the aggregation's message.
QUORUM_JOB_HEARTBEAT_SECONDS = env_float("QUORUM_JOB_HEARTBEAT_SECONDS", 10.0, minimum=0.1)
QUORUM_JOB_HEARTBEAT_TIMEOUT = env_float("QUORUM_JOB_HEARTBEAT_TIMEOUT", 60.0, minimum=1.0)
QUORUM_JOB_PENDING_TIMEOUT = env_float("QUORUM_JOB_PENDING_TIMEOUT", 60.0, minimum=1.0)
if QUORUM_JOB_HEARTBEAT_TIMEOUT <= 2 * QUORUM_JOB_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured("QUORUM_JOB_HEARTBEAT_TIMEOUT must exceed twice QUORUM_JOB_HEARTBEAT_SECONDS")
# Seconds between two sweeps of each Celery worker (loop.services.sweep: lost jobs superseded,
# unsent messages sent again); 0 turns it off.
QUORUM_SWEEP_SECONDS = env_float("QUORUM_SWEEP_SECONDS", 15.0, minimum=0.0)
# Open queue slots under which the queue asks for a refill (a scoring run). Unset: half a batch
# of slots (batch_size x labels_per_item / 2) per project; 0: never.
QUORUM_REFILL_THRESHOLD = (
    env_int("QUORUM_REFILL_THRESHOLD", 0, minimum=0) if env_str("QUORUM_REFILL_THRESHOLD") else None
)
# Seconds between sweeps of expired leases of a project, per web process.
QUORUM_LEASE_SWEEP_SECONDS = env_int("QUORUM_LEASE_SWEEP_SECONDS", 1, minimum=0)
# MSAL's distance weight α in U(x) + α·min‖φ(x) − φ(L)‖ (see acquisition/strategies.py).
QUORUM_MSAL_ALPHA = env_float("QUORUM_MSAL_ALPHA", 0.01, minimum=0.0)
# First batches before any model: "typiclust" (typical points of the largest uncovered clusters),
# "kcenter" or "kmeans++" (acquisition.strategies.COLD_START_METHODS).
QUORUM_COLD_START_METHOD = env_str("QUORUM_COLD_START_METHOD", "typiclust")
if QUORUM_COLD_START_METHOD not in ("typiclust", "kcenter", "kmeans++"):
    raise ImproperlyConfigured("QUORUM_COLD_START_METHOD must be typiclust, kcenter or kmeans++")
# The zero-shot prior from label names (cold-start selection and suggestions until a model exists).
QUORUM_ZERO_SHOT = env_bool("QUORUM_ZERO_SHOT", True)
# The semi-supervised head (label spreading over the kNN graph of the labels and a sample of the
# unlabelled pool, mixed with the supervised head; acquisition.semisupervised) and its node budget.
QUORUM_SEMI_SUPERVISED = env_bool("QUORUM_SEMI_SUPERVISED", True)
QUORUM_SEMI_SUPERVISED_MAX_UNLABELLED = env_int("QUORUM_SEMI_SUPERVISED_MAX_UNLABELLED", 10_000, minimum=0)
# Multi-label projects: the unlabelled pool items (a stable sample) whose predicted probabilities set
# each tag's threshold (expected F1 over the pool, ``acquisition.multilabel``).
QUORUM_TAG_THRESHOLD_POOL = env_int("QUORUM_TAG_THRESHOLD_POOL", 20_000, minimum=1)
# Seconds a burst of annotations waits before the project's labels are re-aggregated.
QUORUM_AGGREGATION_DELAY_SECONDS = env_int("QUORUM_AGGREGATION_DELAY_SECONDS", 10, minimum=0)
# PyTorch intra-op threads per Celery worker process (0: PyTorch's default, one per core).
QUORUM_TORCH_THREADS = env_int("QUORUM_TORCH_THREADS", 0, minimum=0)
# Bootstrap members of the committee trained for query-by-committee (the other strategies train
# one logistic head, BALD one MC-dropout head: acquisition.services.fitting).
QUORUM_COMMITTEE_MEMBERS = env_int("QUORUM_COMMITTEE_MEMBERS", 5, minimum=1)
# Label-error review after each retrain (loop.services.training): at most this many suspected label
# errors (consensus labels the out-of-fold model confidently contradicts) go to the review queue
# per training job, surest first; 0 turns the check off. A reviewer's budget, not a model setting:
# 20 is a fifth of a default round (retrain_after = 100 labels).
QUORUM_LABEL_ERROR_CAP = env_int("QUORUM_LABEL_ERROR_CAP", 20, minimum=0)
# Drift check of every push: at most this many of its items are compared (0 turns the check off).
QUORUM_DRIFT_SAMPLE = env_int("QUORUM_DRIFT_SAMPLE", 5000, minimum=0)
# Monitoring: /metrics asks for "Authorization: Bearer <token>" when this is set; /readyz gives each
# check (database, broker) this many seconds.
QUORUM_METRICS_TOKEN = env_str("QUORUM_METRICS_TOKEN", "")
QUORUM_READY_TIMEOUT = env_float("QUORUM_READY_TIMEOUT", 3.0, minimum=0.1)
# Fine-tuning (projects with training_mode "finetune"): epochs, and whether a worker without CUDA
# may fine-tune (slow; otherwise it trains the heads and says so).
QUORUM_FINETUNE_EPOCHS = env_int("QUORUM_FINETUNE_EPOCHS", 3, minimum=1)
QUORUM_FINETUNE_ON_CPU = env_bool("QUORUM_FINETUNE_ON_CPU", False)

# --- logging --------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # A refused page (403) or a bad request (400) is the client's mistake: one line, no traceback.
    "filters": {"client_errors_quiet": {"()": "quorum.middleware.QuietClientErrors"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["client_errors_quiet"]}
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
