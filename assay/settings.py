"""Assay settings, every one of them read from the environment.

Two shapes of deployment share this file:

* embedded (default): SQLite in WAL mode and Celery's filesystem transport, both under ``var/``;
  no server to install. ``ASSAY_MODE=embedded``.
* production: ``ASSAY_MODE=production`` with ``DATABASE_URL`` (PostgreSQL), ``CELERY_BROKER_URL``
  (Redis or RabbitMQ), ``SECRET_KEY`` and ``ALLOWED_HOSTS``; HTTPS-only cookies and HSTS.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("ASSAY_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_days_by_key(name: str) -> dict[str, int]:
    """``"scan=90,sync=30"`` -> {"scan": 90, "sync": 30}."""
    days = {}
    for item in env_list(name, []):
        key, _, value = item.partition("=")
        if not value.strip().isdigit():
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(f"{name}: {item!r} is not <name>=<days>.")
        days[key.strip()] = int(value)
    return days


ASSAY_MODE = os.environ.get("ASSAY_MODE", "embedded")
PRODUCTION = ASSAY_MODE == "production"
DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    if key := os.environ.get("SECRET_KEY"):
        return key
    if PRODUCTION:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("SECRET_KEY must be set when ASSAY_MODE=production")
    # Embedded installs get a random key kept under var/, so sessions survive restarts
    # without anyone having to invent a secret.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(64))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()


def _credential_keys() -> list[str]:
    """Fernet keys for datastore credentials: the first encrypts, all decrypt (rotation)."""
    if keys := env_list("CREDENTIAL_KEYS", []):
        return keys
    if PRODUCTION:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "CREDENTIAL_KEYS must be set when ASSAY_MODE=production (generate a key with "
            "python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())')."
        )
    # Embedded installs keep their keys under var/, one per line, like the secret key.
    key_file = VAR_DIR / "credential_keys"
    if not key_file.exists():
        import base64

        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key_file.write_text(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode() + "\n")
        key_file.chmod(0o600)
    return [line.strip() for line in key_file.read_text().splitlines() if line.strip()]


CREDENTIAL_KEYS = _credential_keys()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "ninja",  # serves the API docs page from its packaged static files, not a CDN
    "axes",
    "accounts",
    "audit",
    "datastores",
    "runs",
    "activity",
    "monitoring",
    "notifications",
]

MIDDLEWARE = [
    "monitoring.metrics.http_latency_middleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "assay.middleware.user_time_zone",
    "assay.middleware.long_address",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "assay.middleware.api_method_not_allowed_as_json",
    # Last, as django-axes asks: it turns a locked-out login into its lockout answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "assay.urls"
WSGI_APPLICATION = "assay.wsgi.application"
ASGI_APPLICATION = "assay.asgi.application"

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
                "django.template.context_processors.csp",
            ],
        },
    },
]

# Assay's own database. SQLite runs in WAL mode with IMMEDIATE transactions so that writers
# queue on the busy timeout instead of failing with "database is locked" on lock upgrade.
_DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'assay.sqlite3'}")
DATABASES = {
    "default": dj_database_url.parse(
        _DATABASE_URL,
        # A PostgreSQL connection costs milliseconds to open: keep it for a minute of requests
        # (checked before reuse). SQLite's cost nothing.
        conn_max_age=int(
            os.environ.get("DATABASE_CONN_MAX_AGE")
            or ("0" if _DATABASE_URL.startswith("sqlite") else "60")
        ),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    if test_name := os.environ.get("ASSAY_TEST_DATABASE_NAME"):
        DATABASES["default"]["TEST"] = {"NAME": test_name}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
# django-axes first: every authenticate() call, whichever form makes it, is counted and
# refused during a lockout.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "activity:list"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False  # English only; skipping translation lookups speeds up every page
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# --- Security -------------------------------------------------------------------------------
# The Django admin is not part of Assay's UI; mounted only when an operator names its path.
ADMIN_URL = os.environ.get("ADMIN_URL", "").strip("/")

# Failed logins: after LOGIN_FAILURE_LIMIT failures for one user name from one address within
# LOGIN_LOCKOUT_MINUTES, every attempt (even with the right password) is refused until that
# time has passed since the last failure. Counts every login form (django-axes).
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=env_float("LOGIN_LOCKOUT_MINUTES", 15.0))
AXES_USE_ATTEMPT_EXPIRATION = True  # failures older than the window no longer count
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

# Content-Security-Policy: only Assay's own scripts, styles, images and fonts; no inline
# script or style, no plugins, no framing, forms post only to Assay.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Probes and scrapers talk plain HTTP to the process behind the proxy.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)

# LOG_FORMAT=json: one JSON object per line (time, level, logger, message, run_id while a Run
# executes), for log shippers; the default is plain text.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"run_id": {"()": "monitoring.log_context.RunIdFilter"}},
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(run_id)s %(process)d",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "text": {"format": "%(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["run_id"],
            "formatter": "json" if LOG_FORMAT == "json" else "text",
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # django-axes logs every successful login at INFO; failures and lockouts are warnings.
    "loggers": {"axes": {"level": "WARNING"}},
}

# Errors to Sentry when a DSN is set (nothing is imported otherwise). No personal data is sent.
SENTRY_DSN = os.environ.get("SENTRY_DSN", "")
if SENTRY_DSN:
    import sentry_sdk

    sentry_sdk.init(
        dsn=SENTRY_DSN,
        environment=os.environ.get("SENTRY_ENVIRONMENT", ASSAY_MODE),
        traces_sample_rate=env_float("SENTRY_TRACES_SAMPLE_RATE", 0.0),
        send_default_pii=False,
    )

# --- Celery ---------------------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The filesystem transport moves message files between folders; one shared folder makes
    # every producer and consumer on this machine see the same queue.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    for _folder in ("queue", "control"):
        (BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fix-up closes every database connection before and after each task unless
# this is set, so each Run opened a new PostgreSQL connection (BENCHMARKS.md, "Scale-out").
# With it, the fix-up closes them only every that many tasks; in between, tasks recycle them as
# requests do (assay.celery): kept for DATABASE_CONN_MAX_AGE, checked before reuse. 0 restores
# a new connection per task. The fault suite passes with either (it hands this variable to the
# processes it starts).
CELERY_DB_REUSE_MAX = int(os.environ.get("CELERY_DB_REUSE_MAX", "1000"))
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Run execution (seconds) ----------------------------------------------------------------
RUN_HEARTBEAT_INTERVAL = env_float("RUN_HEARTBEAT_INTERVAL", 2.0)
# A running Run whose heartbeat is older than this is declared lost by the reaper.
RUN_HEARTBEAT_STALE_AFTER = env_float("RUN_HEARTBEAT_STALE_AFTER", 30.0)
# An abort the worker has not acknowledged within this grace period is finalised by the reaper.
RUN_ABORT_GRACE = env_float("RUN_ABORT_GRACE", 30.0)
# A queued Run nobody claimed within this delay has probably lost its message: send it again.
RUN_REQUEUE_AFTER = env_float("RUN_REQUEUE_AFTER", 60.0)
RUN_REAPER_INTERVAL = env_float("RUN_REAPER_INTERVAL", 5.0)
# How often the worker's watchdog polls the abort flag; bounds abort latency inside a unit.
RUN_ABORT_POLL_INTERVAL = env_float("RUN_ABORT_POLL_INTERVAL", 0.25)
RUN_LOG_MAX_LINES = int(os.environ.get("RUN_LOG_MAX_LINES", "5000"))
# SQLite only: a worker pauses this long after each unit's commit so that other writers (a
# user's Abort, web requests) get the single write lock between units instead of starving.
RUN_SQLITE_WRITER_PAUSE = env_float("RUN_SQLITE_WRITER_PAUSE", 0.001)
RUN_SCHEDULE_INTERVAL = env_float("RUN_SCHEDULE_INTERVAL", 30.0)
# A Run in which at least this share of its units failed ends Failure (1.0: only when every
# unit failed; 0.5: when half of them did).
RUN_FAILED_UNITS_SHARE = env_float("RUN_FAILED_UNITS_SHARE", 1.0)
# Web requests and housekeeping wait at most this long for a Run's row lock (PostgreSQL), then
# answer 503 / skip the Run until the next pass.
RUN_LOCK_TIMEOUT = env_float("RUN_LOCK_TIMEOUT", 0.5)

# At most this many unclaimed Runs are looked at (oldest first) per reaper pass.
RUN_REQUEUE_BATCH = int(os.environ.get("RUN_REQUEUE_BATCH", "500"))
# An External Scan that received no results for this long ends Failure ("abandoned").
RUN_EXTERNAL_SCAN_ABANDON_AFTER = env_float("RUN_EXTERNAL_SCAN_ABANDON_AFTER", 3600.0)
# Per-operation time limits (seconds since the Run started), e.g. "scan=7200,profile=3600";
# a running Run past its limit ends Failure, by System.
RUN_TIME_LIMITS = {
    operation: float(limit)
    for operation, _, limit in (
        item.partition("=") for item in env_list("RUN_TIME_LIMITS", [
            "sync=3600", "profile=21600", "scan=21600", "export=21600", "materialize=21600",
            "promote=3600",
        ])
    )
}
# Assay's own database briefly unreachable (a restart, a failover): a worker retries its
# bookkeeping writes (and the unit they belong to) for this long before it gives up.
RUN_DB_RETRY_WINDOW = env_float("RUN_DB_RETRY_WINDOW", 60.0)
# PostgreSQL ends a worker's transaction left idle this long (a frozen worker holding its
# Run's row lock), so that the lock is released.
RUN_IDLE_IN_TRANSACTION_TIMEOUT = env_float("RUN_IDLE_IN_TRANSACTION_TIMEOUT", 10.0)
BROKER_PROBE_TIMEOUT = env_float("BROKER_PROBE_TIMEOUT", 2.0)

# Housekeeping runs on its own queue and worker process (Procfile: housekeeping), so it never
# waits behind Runs; a periodic message not consumed within its interval expires (the next
# one comes anyway) instead of piling up while that worker is down.
CELERY_TASK_ROUTES = {
    "runs.reap_runs": {"queue": "housekeeping"},
    "runs.fire_due_schedules": {"queue": "housekeeping"},
    "runs.dispatch_waiting": {"queue": "housekeeping"},
    "runs.apply_retention": {"queue": "housekeeping"},
    # Notifications have their own queue and workers too (Procfile: notifier).
    "notifications.*": {"queue": "notifications"},
}

# Retention: finished Runs launched more than this many days ago are deleted (0: kept for ever),
# per operation if wanted ("scan=90,sync=30" overrides the default for those operations).
RUN_RETENTION_DAYS = int(os.environ.get("RUN_RETENTION_DAYS", "0"))
RUN_RETENTION_DAYS_BY_OPERATION = env_days_by_key("RUN_RETENTION_DAYS_BY_OPERATION")
RUN_RETENTION_INTERVAL = env_float("RUN_RETENTION_INTERVAL", 300.0)
RUN_RETENTION_BATCH_SIZE = int(os.environ.get("RUN_RETENTION_BATCH_SIZE", "500"))
RUN_RETENTION_MAX_PER_PASS = int(os.environ.get("RUN_RETENTION_MAX_PER_PASS", "20000"))

CELERY_BEAT_SCHEDULE = {
    "reap-runs": {"task": "runs.reap_runs", "schedule": RUN_REAPER_INTERVAL,
                  "options": {"queue": "housekeeping", "expires": RUN_REAPER_INTERVAL}},
    "fire-schedules": {"task": "runs.fire_due_schedules", "schedule": RUN_SCHEDULE_INTERVAL,
                       "options": {"queue": "housekeeping", "expires": RUN_SCHEDULE_INTERVAL}},
    # Runs waiting in line for their datastore whose turn came without a Run ending here.
    "dispatch-waiting": {"task": "runs.dispatch_waiting", "schedule": RUN_REAPER_INTERVAL,
                         "options": {"queue": "housekeeping", "expires": RUN_REAPER_INTERVAL}},
    "apply-retention": {"task": "runs.apply_retention", "schedule": RUN_RETENTION_INTERVAL,
                        "options": {"queue": "housekeeping", "expires": RUN_RETENTION_INTERVAL}},
}
# A launch must not hang on a broker that is down: the Run row is the outbox.
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 2.0)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    **globals().get("CELERY_BROKER_TRANSPORT_OPTIONS", {}),
    "socket_connect_timeout": 2, "socket_timeout": 5,
}

# --- Operations: health, metrics (seconds) ----------------------------------------------------
# /healthz answers within this time whatever the state of the database and broker.
HEALTH_TIMEOUT = env_float("HEALTH_TIMEOUT", 2.0)
# Each worker stamps its heartbeat this often; /healthz wants one younger than 1.5 intervals.
WORKER_HEARTBEAT_INTERVAL = env_float("WORKER_HEARTBEAT_INTERVAL", 10.0)
# /metrics' queue-wait and duration histograms cover the Runs launched within this window.
METRICS_WINDOW = env_float("METRICS_WINDOW", 3600.0)
# When set, /metrics answers only a scraper sending "Authorization: Bearer <METRICS_TOKEN>".
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")

# --- Notifications ----------------------------------------------------------------------------
# Webhook URLs may use these schemes (plain http only outside production by default); hosts in
# DATASTORE_DENIED_HOSTS are refused to webhooks too.
WEBHOOK_ALLOWED_SCHEMES = env_list(
    "WEBHOOK_ALLOWED_SCHEMES", ["https"] if PRODUCTION else ["https", "http"]
)
WEBHOOK_TIMEOUT = env_float("WEBHOOK_TIMEOUT", 5.0)  # seconds per attempt
WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("WEBHOOK_MAX_ATTEMPTS", "5"))
# Seconds before the 2nd attempt; doubled before each next one (10, 20, 40, 80 s).
WEBHOOK_RETRY_BACKOFF = env_float("WEBHOOK_RETRY_BACKOFF", 10.0)
# Email notifications go out only when an email backend is configured (EMAIL_HOST or
# EMAIL_BACKEND set).
MAILERS = {
    "default": {
        "BACKEND": os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend"),
        "OPTIONS": {
            "host": os.environ.get("EMAIL_HOST", "localhost"),
            "port": int(os.environ.get("EMAIL_PORT", "25")),
            "username": os.environ.get("EMAIL_HOST_USER", ""),
            "password": os.environ.get("EMAIL_HOST_PASSWORD", ""),
            "use_tls": env_bool("EMAIL_USE_TLS", False),
            "timeout": 10,
        }
        if "EMAIL_BACKEND" not in os.environ
        else {},
    }
}
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "assay@localhost")
NOTIFY_BY_EMAIL = bool(os.environ.get("EMAIL_HOST") or os.environ.get("EMAIL_BACKEND"))

# --- Datastores -----------------------------------------------------------------------------
# Drivers (dialect+driver) datastore URLs may use; empty: every driver Assay has a vetting rule
# for and whose Python package is installed (datastores/url_policy.py).
DATASTORE_ALLOWED_DRIVERS = env_list("DATASTORE_ALLOWED_DRIVERS", [])
# Folders a file-based datastore (SQLite) may live in, symlinks resolved.
DATASTORE_FILE_DIRS = env_list(
    "DATASTORE_FILE_DIRS", [str(VAR_DIR / "sources"), str(VAR_DIR / "demo")]
)
# Hosts no datastore may connect to: IP networks (169.254.0.0/16) or names (".internal"
# denies every name under it). Default none; docs/security.md suggests a list.
DATASTORE_DENIED_HOSTS = env_list("DATASTORE_DENIED_HOSTS", [])

# Timeouts for connecting to source datastores, so a bad host fails a Run quickly.
SOURCE_CONNECT_TIMEOUT = int(os.environ.get("SOURCE_CONNECT_TIMEOUT", "10"))
# Rows per batch when Export and Materialize stream into the enrichment datastore: memory use
# is bounded by one batch whatever the table size, and abort is checked between batches.
ENRICHMENT_BATCH_SIZE = int(os.environ.get("ENRICHMENT_BATCH_SIZE", "1000"))
