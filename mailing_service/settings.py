"""Settings for the mailing service.

Every value comes from the environment (or a `.env` file beside manage.py) through
django-environ; `.env.example` lists them all with the defaults used for local runs.
The defaults need nothing but Python: SQLite, a filesystem broker and a file cache under var/.
Importing this module reads files but creates none: `manage.py ensure_local_state` makes var/, its
folders and the local secret key (setup_demo, and so `make run`, runs it first).
"""

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from mailing_service.local_state import read_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# --- Local state, secret key, hosts ---------------------------------------------------------------
# Local state of the default set-up (SQLite, broker folder, file cache, secret key, static files).
VAR_DIR = Path(env.str("VAR_DIR", default="") or BASE_DIR / "var")

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
# Without DJANGO_SECRET_KEY, the key generated for local runs; still empty before it is generated:
# then web and worker refuse to start (mailing_service.local_state.require_secret_key).
SECRET_KEY_FROM_FILE = not SECRET_KEY
SECRET_KEY_FILE = VAR_DIR / "secret_key"
if SECRET_KEY_FROM_FILE:
    SECRET_KEY = read_secret_key(SECRET_KEY_FILE)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# --- HTTPS and proxies --------------------------------------------------------------------------
# Production runs behind TLS. All off by default for local http runs; `check --deploy` reports
# nothing once they are set (mailing_service/tests/test_deploy_settings.py).
# Behind a proxy that ends TLS and sets X-Forwarded-Proto: https (an ingress, a load balancer).
if env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
# Health checks call the pods over plain http.
SECURE_REDIRECT_EXEMPT = [r"^health/"]
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=False)

# How many proxies (load balancer, ingress) stand in front and append the client's address to
# X-Forwarded-For; rate limits and the admin lockout count that address instead of the proxy's.
TRUSTED_PROXY_COUNT = env.int("DJANGO_TRUSTED_PROXY_COUNT", default=0)

# --- Django: apps, middleware, templates, database, cache, static files ---------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "clients",
    "mailings",
    "messages_app",
    "providers",
    "ops",
    "console",
    "accounts",
    "axes",
]

MIDDLEWARE = [
    # First: its request id and duration cover everything below it.
    "ops.middleware.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: answers a locked-out login attempt
]

ROOT_URLCONF = "mailing_service.urls"
WSGI_APPLICATION = "mailing_service.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "mailing_service" / "templates"],
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

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share the file: WAL lets readers run beside the single writer,
    # IMMEDIATE takes the write lock at BEGIN so concurrent claims queue instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache("CACHE_URL", default=f"filecache://{VAR_DIR / 'cache'}")}
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    # redis-py waits forever by default: a Redis that stops answering would hold every request. The
    # API's rate limits let requests through when the cache fails (mailing_service.throttling).
    _cache_timeout = env.float("CACHE_TIMEOUT", default=1.0)
    CACHES["default"].setdefault("OPTIONS", {}).update(
        socket_connect_timeout=_cache_timeout, socket_timeout=_cache_timeout
    )

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("DJANGO_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# The site's own files (its favicon), beside the apps' static folders.
STATICFILES_DIRS = [BASE_DIR / "mailing_service" / "static"]
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", default=VAR_DIR / "static")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the apps' static folders when collectstatic has not run (local runs, tests).
WHITENOISE_USE_FINDERS = True

# --- Admin login lockout (django-axes) ---------------------------------------------------------
# This many wrong passwords for one account from one address lock that pair out of the admin login
# for AXES_COOLOFF_MINUTES: an attacker cannot lock an administrator out from elsewhere, and a login
# clears the failures of its own account only. The address is counted as the API's limits count it.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("AXES_COOLOFF_MINUTES", default=15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "accounts.lockout.client_address"

# --- OpenID Connect login for the admin (mailing_service/oidc.py) -----------------------------
# Off by default: the admin's username and password login is always there; this adds a button.
OIDC_ENABLED = env.bool("OIDC_ENABLED", default=False)
OIDC_RP_CLIENT_ID = env.str("OIDC_RP_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env.str("OIDC_RP_CLIENT_SECRET", default="")
OIDC_OP_AUTHORIZATION_ENDPOINT = env.str("OIDC_OP_AUTHORIZATION_ENDPOINT", default="")
OIDC_OP_TOKEN_ENDPOINT = env.str("OIDC_OP_TOKEN_ENDPOINT", default="")
OIDC_OP_USER_ENDPOINT = env.str("OIDC_OP_USER_ENDPOINT", default="")
OIDC_OP_JWKS_ENDPOINT = env.str("OIDC_OP_JWKS_ENDPOINT", default="")
OIDC_RP_SIGN_ALGO = env.str("OIDC_RP_SIGN_ALGO", default="RS256")
OIDC_RP_SCOPES = env.str("OIDC_RP_SCOPES", default="openid email profile")
OIDC_TIMEOUT = env.float("OIDC_TIMEOUT", default=10.0)
# The claim listing a person's roles, and which role grants which Django group ("role=group,...").
OIDC_ROLES_CLAIM = env.str("OIDC_ROLES_CLAIM", default="groups")
OIDC_ROLE_GROUPS = env.dict("OIDC_ROLE_GROUPS", default={"operators": "operators", "viewers": "viewers"})
# The groups whose members use the admin: only they are made staff by a single sign-on login.
OIDC_STAFF_GROUPS = env.list("OIDC_STAFF_GROUPS", default=["operators", "admins"])
LOGIN_REDIRECT_URL = "/admin/"
LOGOUT_REDIRECT_URL = "/admin/"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out address before any hashing
    "django.contrib.auth.backends.ModelBackend",
]
if OIDC_ENABLED:
    AUTHENTICATION_BACKENDS.append("mailing_service.oidc.RoleMappingOIDCBackend")

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Roles through model permissions: viewers read, operators and admins write (accounts.roles).
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.RolePermission"],
    # JSON bodies only, bounded in size and depth (mailing_service.errors).
    "DEFAULT_PARSER_CLASSES": ["mailing_service.errors.BoundedJSONParser"],
    "EXCEPTION_HANDLER": "mailing_service.errors.api_exception_handler",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "mailing_service.filters.StrictOrderingFilter",
    ],
    # Rate limits (mailing_service.throttling): 429 with Retry-After past them.
    "DEFAULT_THROTTLE_CLASSES": [
        "mailing_service.throttling.UserRateThrottle",
        "mailing_service.throttling.UserWriteRateThrottle",
        "mailing_service.throttling.IpRateThrottle",
        "mailing_service.throttling.ActionRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env.str("API_THROTTLE_USER", default="600/min"),
        "user_write": env.str("API_THROTTLE_USER_WRITE", default="300/min"),
        "ip": env.str("API_THROTTLE_IP", default="1200/min"),
        "failed_auth": env.str("API_THROTTLE_FAILED_AUTH", default="20/min"),
        # Scopes of actions that cost more (a view sets throttle_scope): a test SMS, a CSV import.
        "test_send": env.str("TEST_SEND_RATE", default="10/minute"),
        "client_import": env.str("API_THROTTLE_CLIENT_IMPORT", default="10/hour"),
    },
    # Proxies in front of the service that append to X-Forwarded-For (an ingress: 1); 0 trusts no
    # such header and counts the connecting address.
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
    "DEFAULT_PAGINATION_CLASS": "mailing_service.pagination.StrictPageNumberPagination",
    "PAGE_SIZE": env.int("API_PAGE_SIZE", default=50),
    "DEFAULT_SCHEMA_CLASS": "mailing_service.schema.ApiAutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Mailing service API",
    "DESCRIPTION": "Clients, mailings (SMS campaigns), their messages and delivery statistics.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# Hours a POST's Idempotency-Key is remembered with its answer (ops.idempotency); purged hourly.
IDEMPOTENCY_KEY_HOURS = env.int("IDEMPOTENCY_KEY_HOURS", default=24)

# Days an API token works after it was issued, unless issue_api_token --expires-in gave it its own
# expiry; 0: tokens do not expire.
API_TOKEN_LIFETIME_DAYS = env.int("API_TOKEN_LIFETIME_DAYS", default=90)

# --- Domain ---------------------------------------------------------------------------------
# Timezone given to a client created without one.
DEFAULT_CLIENT_TIMEZONE = env.str("DEFAULT_CLIENT_TIMEZONE", default="Europe/Moscow")
# Client CSV import: rows written per transaction, the largest request body and the most rows
# taken (a file over either is refused before anything is written), and the bulk upsert's items.
CLIENT_IMPORT_BATCH_SIZE = env.int("CLIENT_IMPORT_BATCH_SIZE", default=2000)
CLIENT_IMPORT_MAX_BYTES = env.int("CLIENT_IMPORT_MAX_BYTES", default=50 * 1024 * 1024)
CLIENT_IMPORT_MAX_ROWS = env.int("CLIENT_IMPORT_MAX_ROWS", default=25_000)
CLIENT_BULK_MAX_ITEMS = env.int("CLIENT_BULK_MAX_ITEMS", default=5000)
# Quiet hours: the local-time window (HH:MM-HH:MM in each client's timezone) given to a mailing
# created without one and not marked to send at any hour; empty: none.
DEFAULT_LOCAL_WINDOW = env.str("DEFAULT_LOCAL_WINDOW", default="09:00-21:00")
# The frequency cap: at most this many messages to one client in any 24 hours, across mailings
# (those of cap_exempt mailings count but are never held); empty: no cap.
CLIENT_MAX_MESSAGES_PER_DAY = (
    env.int("CLIENT_MAX_MESSAGES_PER_DAY") if env.str("CLIENT_MAX_MESSAGES_PER_DAY", default="") else None
)
# Test sends: clients per request (the request answers at once; a worker sends them).
TEST_SEND_MAX_CLIENTS = env.int("TEST_SEND_MAX_CLIENTS", default=10)

# --- Sending --------------------------------------------------------------------------------
PROVIDER_URL = env.str("PROVIDER_URL", default="http://127.0.0.1:8070/v1")
PROVIDER_TOKEN = env.str("PROVIDER_TOKEN", default="")
PROVIDER_CONNECT_TIMEOUT = env.float("PROVIDER_CONNECT_TIMEOUT", default=3.0)
PROVIDER_READ_TIMEOUT = env.float("PROVIDER_READ_TIMEOUT", default=10.0)
# How long one request may take in all, connecting included: then it is given up and retried.
PROVIDER_REQUEST_TIMEOUT = PROVIDER_CONNECT_TIMEOUT + PROVIDER_READ_TIMEOUT
_CACHE_URL = env.str("CACHE_URL", default="")
# The provider's API: "probe" (PROVIDER_URL and PROVIDER_TOKEN, docs/provider-api.md) or "kannel"
# (Kannel's sendsms, KANNEL_*, with delivery receipts), used under the name "default" while no
# provider is configured in the admin.
PROVIDER_KIND = env.str("PROVIDER_KIND", default="probe")
if PROVIDER_KIND not in ("probe", "kannel"):
    raise ImproperlyConfigured(f"PROVIDER_KIND must be probe or kannel, not {PROVIDER_KIND!r}")
# Kannel's smsbox: its sendsms URL, a sendsms-user's credentials, the sender shown on the phone
# (empty: Kannel's default) and the SMSC to route through (empty: Kannel's routing).
KANNEL_URL = env.str("KANNEL_URL", default="http://127.0.0.1:13013/cgi-bin/sendsms")
KANNEL_USERNAME = env.str("KANNEL_USERNAME", default="")
KANNEL_PASSWORD = env.str("KANNEL_PASSWORD", default="")
KANNEL_FROM = env.str("KANNEL_FROM", default="")
KANNEL_SMSC = env.str("KANNEL_SMSC", default="")
# Delivery receipts: this service's address as the provider reaches it (the dlr-url's base), and
# each provider's receipt secret (name=secret,name=secret); a provider without one gets no receipts.
RECEIPT_BASE_URL = env.str("RECEIPT_BASE_URL", default="http://127.0.0.1:8000")
RECEIPT_SECRETS: dict[str, str] = env.dict("RECEIPT_SECRETS", default={})
# Seconds after which a message of a provider with receipts still `sent` counts as "no receipt".
RECEIPT_WAIT = env.float("RECEIPT_WAIT", default=3 * 24 * 3600.0)
# Receipts wait in this Redis list's server (default: CACHE_URL when that is Redis) and are written in
# batches of RECEIPT_BATCH_SIZE every RECEIPT_DRAIN_INTERVAL seconds; without Redis each is written
# as it comes (a small deployment's load).
RECEIPT_QUEUE_URL = env.str(
    "RECEIPT_QUEUE_URL", default=_CACHE_URL if _CACHE_URL.startswith(("redis://", "rediss://")) else ""
)
RECEIPT_BATCH_SIZE = env.int("RECEIPT_BATCH_SIZE", default=1000)
# Seconds a queued receipt that came before its message's acceptance was written waits for it.
RECEIPT_EARLY_KEEP = env.float("RECEIPT_EARLY_KEEP", default=300.0)
RECEIPT_DRAIN_INTERVAL = env.float("RECEIPT_DRAIN_INTERVAL", default=0.5)
# Where `manage.py serve_receipts` listens: a server that only takes receipts, many times faster
# than a web process (docs/sending.md); point RECEIPT_BASE_URL, or the ingress's /receipts/, at it.
RECEIPT_SERVER_BIND = env.str("RECEIPT_SERVER_BIND", default="127.0.0.1:8002")

# The in-flight limit's slow-start target for one sender (one per worker pool process): it starts at
# half of this and doubles every round trip up to it, then adapts between MIN and MAX.
SENDER_CONCURRENCY = env.int("SENDER_CONCURRENCY", default=200)
# The in-flight limit then adapts (AIMD) between these: it grows while the provider's latency
# stays near its best and shrinks on 429s, timeouts, 5xx or latency climbing.
SENDER_CONCURRENCY_MIN = env.int("SENDER_CONCURRENCY_MIN", default=20)
SENDER_CONCURRENCY_MAX = env.int("SENDER_CONCURRENCY_MAX", default=1000)
# Sends per second the provider account allows, for the whole service (empty: no limit; the sender
# then learns it from the provider's 429s). Shared through Redis: RATE_LIMIT_REDIS_URL, by default
# CACHE_URL when that is Redis; without Redis, through a file under var/ (one machine).
PROVIDER_RATE_LIMIT = (
    env.float("PROVIDER_RATE_LIMIT", default=None) if env.str("PROVIDER_RATE_LIMIT", default="") else None
)
RATE_LIMIT_REDIS_URL = env.str(
    "RATE_LIMIT_REDIS_URL", default=_CACHE_URL if _CACHE_URL.startswith(("redis://", "rediss://")) else ""
)
RATE_LIMIT_FILE = VAR_DIR / "rate-limit.bucket"
# SENDER_DISPATCHERS_PER_MAILING: this setting's former name, still read until the next release.
SENDERS_PER_MAILING = env.int(
    "SENDERS_PER_MAILING", default=env.int("SENDER_DISPATCHERS_PER_MAILING", default=2)
)
# Pool processes run a sender beside their tasks; false for a worker that should only run tasks.
SENDER_ENABLED = env.bool("SENDER_ENABLED", default=True)
# Seconds a claim and a slot hold unless their live sender renews them (it does every second):
# after a crash, this is how long its messages wait before another sender takes them.
SENDER_LEASE_SECONDS = env.float("SENDER_LEASE_SECONDS", default=5.0)
# On stop (SIGTERM, warm shutdown) requests in flight get this long; then they are cut (unknown).
SENDER_STOP_GRACE = env.float("SENDER_STOP_GRACE", default=10.0)
# No request starts with less than this (or the recent p99 latency, if longer) left before the end.
SENDER_END_MARGIN = env.float("SENDER_END_MARGIN", default=0.2)
# No message is handed out for a client whose local window closes within this many seconds: more
# than a request can take (connect + read timeouts) from its claim, so that no acceptance lands
# after the close. A provider gate that makes requests wait (a rate limit) needs it longer.
SENDER_WINDOW_MARGIN = env.float("SENDER_WINDOW_MARGIN", default=15.0)
# Retry backoff: full jitter over min(cap, base * 2 ** (attempt - 1)) seconds. Small: random
# failures are best retried soon; a provider that is down is the breaker's job.
SENDER_RETRY_BASE = env.float("SENDER_RETRY_BASE", default=0.5)
SENDER_RETRY_CAP = env.float("SENDER_RETRY_CAP", default=5.0)
# Attempts a message gets: the last one's retryable failure ends it `failed` ("gave up after N
# attempts"), or `unknown` if some attempt went unanswered. Attempts given back (429s, pauses) and
# deferrals do not count. Ten spans about 25 s of backoff: a random failure is not met ten times.
SENDER_MAX_ATTEMPTS = env.int("SENDER_MAX_ATTEMPTS", default=10)
if SENDER_MAX_ATTEMPTS < 1:
    raise ImproperlyConfigured("SENDER_MAX_ATTEMPTS must be at least 1")
# A dead sender's claims, once their lease runs out: `resend` (back to pending and sent again: no
# message lost, those it had in flight may be sent twice) or `unknown` (ended `unknown`: none sent
# twice, those it had not yet sent are not sent at all). docs/sending.md#a-dead-senders-claims.
SENDER_LOST_CLAIMS = env.str("SENDER_LOST_CLAIMS", default="resend")
if SENDER_LOST_CLAIMS not in ("resend", "unknown"):
    raise ImproperlyConfigured(f"SENDER_LOST_CLAIMS must be resend or unknown, not {SENDER_LOST_CLAIMS!r}")
# Circuit breaker: this many retryable failures in a row pause all sending for the pause. With
# hundreds of requests in flight a provider failing 40 % of them shows 5 in a row every hundred or
# so answers (0.4 ** 5); 20 in a row (0.4 ** 20) means it is down, and still shows within a second.
SENDER_BREAKER_THRESHOLD = env.int("SENDER_BREAKER_THRESHOLD", default=20)
SENDER_BREAKER_PAUSE = env.float("SENDER_BREAKER_PAUSE", default=30.0)
# After a 401/403 nobody sends for this long; then one attempt checks whether the token works again.
SENDER_AUTH_PAUSE = env.float("SENDER_AUTH_PAUSE", default=60.0)
# Several providers (docs/sending.md#providers): a tenth of a provider's resting weight moves away
# after this many failed requests within the window, and comes back after DRIFT_EVERY seconds
# without a shift.
PROVIDER_WEIGHT_SHIFT_ERRORS = env.int("PROVIDER_WEIGHT_SHIFT_ERRORS", default=50)
PROVIDER_WEIGHT_SHIFT_WINDOW = env.float("PROVIDER_WEIGHT_SHIFT_WINDOW", default=60.0)
PROVIDER_WEIGHT_DRIFT_EVERY = env.float("PROVIDER_WEIGHT_DRIFT_EVERY", default=300.0)
# A tenth also moves away from a provider with delivery receipts, at most once per DRIFT_EVERY, when
# SLOW_SHARE of its messages sent within the last SLOW_WINDOW seconds and at least SLOW_DELIVERY ago
# (SLOW_SAMPLE of them at least) were delivered more than SLOW_DELIVERY seconds after acceptance, or
# not yet; it does not drift back while they are.
PROVIDER_WEIGHT_SLOW_DELIVERY = env.float("PROVIDER_WEIGHT_SLOW_DELIVERY", default=300.0)
PROVIDER_WEIGHT_SLOW_SHARE = env.float("PROVIDER_WEIGHT_SLOW_SHARE", default=0.15)
PROVIDER_WEIGHT_SLOW_WINDOW = env.float("PROVIDER_WEIGHT_SLOW_WINDOW", default=600.0)
PROVIDER_WEIGHT_SLOW_SAMPLE = env.int("PROVIDER_WEIGHT_SLOW_SAMPLE", default=100)
if PROVIDER_WEIGHT_SLOW_WINDOW <= PROVIDER_WEIGHT_SLOW_DELIVERY:
    raise ImproperlyConfigured(
        "PROVIDER_WEIGHT_SLOW_WINDOW must be longer than PROVIDER_WEIGHT_SLOW_DELIVERY"
    )
# Containers (objects that can hold others) made, net of those freed, between two young collections
# of the cyclic garbage collector in a worker pool process (Python's default: 700). At the default,
# collections take much of a sending process's time (docs/decisions/frozen-gc-in-pool-processes.md).
WORKER_GC_THRESHOLD = env.int("WORKER_GC_THRESHOLD", default=25_000)
if WORKER_GC_THRESHOLD < 1:
    raise ImproperlyConfigured("WORKER_GC_THRESHOLD must be at least 1: 0 would turn the collector off")

# Fan-out: clients read and messages inserted per batch; a dead launcher's lease runs out after
# FANOUT_LEASE seconds and the scanner resumes from its checkpoint.
FANOUT_BATCH_SIZE = env.int("FANOUT_BATCH_SIZE", default=5000)
FANOUT_LEASE = env.float("FANOUT_LEASE", default=120.0)

# --- Celery ---------------------------------------------------------------------------------
_BROKER_DIR = VAR_DIR / "broker"
# "localhost" only keeps kombu from warning that no host was given: the folder is the broker.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://localhost/")
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded broker: a folder of message files, so a local run needs no server.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR),
        "data_folder_out": str(_BROKER_DIR),
        "control_folder": str(_BROKER_DIR / "control"),
        "store_processed": False,
    }
# Several deployments (or the tests) can share one broker with a queue each.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = env.str(
    "CELERY_BEAT_SCHEDULE_FILENAME", default=str(VAR_DIR / "celerybeat-schedule")
)
CELERY_TIMEZONE = TIME_ZONE

MAILING_SCAN_INTERVAL = env.float("MAILING_SCAN_INTERVAL", default=5.0)
MESSAGE_SWEEP_INTERVAL = env.float("MESSAGE_SWEEP_INTERVAL", default=15.0)
STATS_EMAIL_CHECK_INTERVAL = env.float("STATS_EMAIL_CHECK_INTERVAL", default=60.0)
CELERY_BEAT_SCHEDULE = {
    "send-daily-report": {
        "task": "console.tasks.send_daily_report",
        "schedule": STATS_EMAIL_CHECK_INTERVAL,
    },
    "launch-due-mailings": {
        "task": "mailings.tasks.launch_due_mailings",
        "schedule": MAILING_SCAN_INTERVAL,
    },
    "sweep-stuck-messages": {
        "task": "messages_app.tasks.sweep_messages",
        "schedule": MESSAGE_SWEEP_INTERVAL,
    },
    "purge-idempotency-keys": {
        "task": "ops.tasks.purge_idempotency_keys",
        "schedule": 3600.0,
    },
}
if RECEIPT_QUEUE_URL:
    CELERY_BEAT_SCHEDULE["write-receipts"] = {
        "task": "messages_app.tasks.write_receipts",
        "schedule": RECEIPT_DRAIN_INTERVAL,
        # A late run is worth nothing: the next one, half a second on, writes what it would have.
        "options": {"expires": RECEIPT_DRAIN_INTERVAL * 4},
    }

# --- Operations: daily report, metrics, health, logs ---------------------------------------------
# Email through django-environ's EMAIL_URL: consolemail:// prints it (local runs), smtp+tls://... sends.
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="mailing-service@localhost")
# The daily statistics report: who gets it (empty: nobody, no report) and when, in local time.
STATS_EMAIL_RECIPIENTS = env.list("STATS_EMAIL_RECIPIENTS", default=[])
STATS_EMAIL_TIME = env.str("STATS_EMAIL_TIME", default="09:00")
STATS_EMAIL_TIMEZONE = env.str("STATS_EMAIL_TIMEZONE", default=TIME_ZONE)

# Bearer token that /metrics asks for; empty: /metrics answers callers on this machine only.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Shared folder where every process (gunicorn workers, Celery children) writes its metrics; empty:
# single-process mode (runserver, tests). prometheus-client reads it from the environment itself.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
# Seconds the scrape-time database figures are shared between scrapes and web processes.
METRICS_DB_CACHE_SECONDS = env.float("METRICS_DB_CACHE_SECONDS", default=30.0)
# Seconds /health/ready waits for the broker.
HEALTH_BROKER_TIMEOUT = env.float("HEALTH_BROKER_TIMEOUT", default=2.0)

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="text")  # "text" or "json"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "ops.logging.ContextFilter"},
        "routine_tasks": {
            "()": "mailing_service.log_filters.RoutineTaskFilter",
            "tasks": [entry["task"] for entry in CELERY_BEAT_SCHEDULE.values()],
        },
    },
    "formatters": {
        "text": {
            "()": "ops.logging.TextFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {
            "()": "ops.logging.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
    },
    # The context filter adds the request's or the task's ids and masks phones, for every logger's records.
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # Requests are logged once, by ops.middleware; these would repeat them (runserver's with the
        # query string). Server errors still come through, with their traceback.
        "django.request": {"level": "ERROR"},
        "django.server": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        # django-axes announces its version at INFO on every start of Django (each manage.py call).
        "axes": {"level": "WARNING"},
        # Where Celery logs "Sending due task", "Task ... received" and "Task ... succeeded".
        **{
            name: {"filters": [] if LOG_LEVEL.upper() == "DEBUG" else ["routine_tasks"]}
            for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace")
        },
    },
}
