"""Settings, all read from the environment.

The defaults are the embedded development setup: SQLite, Celery tasks run in-process, local-memory
cache. Setting DATABASE_URL and REDIS_URL switches to PostgreSQL, Redis and real Celery workers.
With DEBUG off, missing or unsafe values fail loudly at start-up. `.env.example` documents each.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import tempfile
from pathlib import Path

import environ
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def env_float(var: str, *, default: float) -> float:
    """A number from the environment, read by Python's float(): django-environ's own float parser
    drops every character that is not a digit, so "1e9" became 19. Anything else stops the start."""
    raw = env.str(var, default="").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{var} must be a number, not {raw!r}") from None


DEBUG = env.bool("DEBUG", default=True)
if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="insecure-development-key-not-for-production")
else:
    SECRET_KEY = env.str("SECRET_KEY")  # no default: production must set it
    if len(SECRET_KEY) < 50 or SECRET_KEY.startswith("insecure"):
        raise ImproperlyConfigured("SECRET_KEY must be a random string of at least 50 characters")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
# Origins besides this site's own that may send state-changing requests (config/origin.py).
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Reverse proxies in front of the web server: X-Forwarded-For (the client's address) and
# X-Forwarded-Proto are believed only when set (config/clients.py). 0: the socket's peer is the client.
TRUSTED_PROXIES = env.int("TRUSTED_PROXIES", default=0)
if TRUSTED_PROXIES < 0:
    raise ImproperlyConfigured("TRUSTED_PROXIES must be 0 or more")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "providers",
    "arena",
    "leaderboard",
    "serving",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.errors.DatabaseUnavailableMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "config.origin.origin_check",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
]

# Content-Security-Policy of every response (django-csp): scripts, styles and everything else come
# from this site's own files only; no inline script anywhere. Style attributes stay allowed: the
# board draws its intervals with CSS variables set per row (`style="--l: ..."`), and KaTeX sizes
# each part of a formula with one (its stylesheet and fonts are files here, static/vendor/). The
# API docs pages loosen styles only (config/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "style-src-attr": [UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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

# --- Database -------------------------------------------------------------------------------
# An empty DATABASE_URL (as `DATABASE_URL= make run` gives) means the default, like an unset one.
DATABASES = {
    "default": env.db_url_config(
        env.str("DATABASE_URL", default="") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Streams write answers from worker threads while requests read: WAL lets readers proceed, and
    # IMMEDIATE transactions take the write lock up front instead of failing on lock upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # A file, not Django's shared-cache memory database: tests run a live ASGI server in threads,
    # and shared-cache SQLite fails concurrent writers at once instead of waiting for the lock.
    # One file per test process, so that two test runs on one machine never share it.
    # In the temporary directory: live-server threads may still hold their connections when the
    # test database is removed, which leaves its -wal and -shm files behind.
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"arena-test-{os.getpid()}.sqlite3")
    }
    # Each thread keeps its connection: opening one (the pragmas above, Django's SQL functions, a
    # cold statement cache) would otherwise sit in every battle's time to first token.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=600)
else:
    # Under ASGI a request's steps run on many threads and a battle streams for minutes, so
    # persistent per-thread connections would pile up (one per open stream). psycopg's pool
    # instead lends a connection for each short step and caps how many the process opens.
    # DB_POOL_MAX_SIZE=0 turns it off (with PgBouncer in front, say).
    pool_size = env.int("DB_POOL_MAX_SIZE", default=20)
    if pool_size:
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": pool_size,
            # An unreachable database answers in seconds (a JSON 503 on the API, config/errors.py),
            # not after a long wait that holds the worker's threads and the requests behind them.
            "timeout": env_float("DB_POOL_TIMEOUT", default=5.0),
        }
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env.int(
        "DB_CONNECT_TIMEOUT", default=3
    )
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, sessions, Celery --------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    # Optional at run time: while Redis is unreachable each process uses a local cache (config/cache.py).
    CACHES = {"default": {"BACKEND": "config.cache.FailSoftRedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
SESSION_COOKIE_AGE = 60 * 60 * 24 * 30
SESSION_COOKIE_SAMESITE = "Lax"

# Without Redis there is no broker: tasks run in-process, at the moment they are queued.
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or REDIS_URL or "memory://"
# Tasks write their results to the database; nobody reads Celery's result backend.
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged after it ran, so a worker killed mid-recompute does not lose it; the
# recompute is idempotent, so running it twice is harmless.
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"

LEADERBOARD_RECOMPUTE_SECONDS = env.int("LEADERBOARD_RECOMPUTE_SECONDS", default=300)
# The integrity sweep (duplicate prompts, anomalous voters): its exclusions reach the next recompute.
LEADERBOARD_INTEGRITY_SECONDS = env.int("LEADERBOARD_INTEGRITY_SECONDS", default=3600)
# The one periodic schedule of the project.
CELERY_BEAT_SCHEDULE = {
    "recompute-leaderboard": {
        "task": "leaderboard.tasks.recompute",
        "schedule": LEADERBOARD_RECOMPUTE_SECONDS,
    },
    "score-voters": {
        "task": "leaderboard.tasks.score_voters",
        "schedule": LEADERBOARD_INTEGRITY_SECONDS,
    },
}

# /readyz (config.health): the checks that make it answer 503. Those a deployment does not use (the
# broker and the worker with tasks in-process) pass as "not used". A worker is live while its
# heartbeat is younger than READYZ_WORKER_SECONDS; the board is current while no vote has waited
# longer than READYZ_SNAPSHOT_SECONDS for a recompute.
READYZ_REQUIRED = env.list("READYZ_REQUIRED", default=["database", "cache", "broker", "worker", "snapshot"])
READYZ_WORKER_SECONDS = env.int("READYZ_WORKER_SECONDS", default=60)
READYZ_SNAPSHOT_SECONDS = env.int("READYZ_SNAPSHOT_SECONDS", default=3 * LEADERBOARD_RECOMPUTE_SECONDS)
_unknown = set(READYZ_REQUIRED) - {"database", "cache", "broker", "worker", "snapshot"}
if _unknown:
    raise ImproperlyConfigured(f"READYZ_REQUIRED names unknown checks: {', '.join(sorted(_unknown))}")

# /metrics (config.metrics), for the operators' Prometheus: off (404) unless one of these is set. A
# scraper sends `Authorization: Bearer <METRICS_TOKEN>`, or connects from one of METRICS_NETWORKS
# (CIDRs, matched against the socket's peer, never X-Forwarded-For). METRICS_QUEUES: the Celery
# queues whose depth is reported.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_NETWORKS = env.list("METRICS_NETWORKS", default=[])
for _network in METRICS_NETWORKS:
    try:
        ipaddress.ip_network(_network)
    except ValueError:
        raise ImproperlyConfigured(f"METRICS_NETWORKS: {_network!r} is not a network (CIDR)") from None
METRICS_QUEUES = env.list("METRICS_QUEUES", default=["celery"])

# --- Arena ------------------------------------------------------------------------------------
ARENA_PROMPT_MAX_CHARS = env.int("ARENA_PROMPT_MAX_CHARS", default=16000)
ARENA_MAX_TURNS = env.int("ARENA_MAX_TURNS", default=10)
# Follow-up turns per client IP: each calls both models again, as a new battle does.
ARENA_TURN_RATE = env.str("ARENA_TURN_RATE", default="30/minute")
# Prompt moderation before any model is called (providers/moderation.py): "local" (rules in a file,
# the embedded default), "openai" (the local rules, then OpenAI's moderation endpoint) or "off".
ARENA_MODERATION = env.str("ARENA_MODERATION", default="local")
if ARENA_MODERATION not in ("local", "openai", "off"):
    raise ImproperlyConfigured(
        f'ARENA_MODERATION must be "local", "openai" or "off", not {ARENA_MODERATION!r}'
    )
ARENA_MODERATION_RULES = env.str(
    "ARENA_MODERATION_RULES", default=str(BASE_DIR / "providers" / "moderation_rules.txt")
)
ARENA_MODERATION_URL = env.str("ARENA_MODERATION_URL", default="https://api.openai.com/v1")
ARENA_MODERATION_MODEL = env.str("ARENA_MODERATION_MODEL", default="omni-moderation-latest")
# The name of the environment variable that holds the endpoint's key, read at each call.
ARENA_MODERATION_API_KEY_ENV = env.str("ARENA_MODERATION_API_KEY_ENV", default="OPENAI_API_KEY")
# Seconds the endpoint may take in all; past them (or on any failure) see ARENA_MODERATION_FAIL_CLOSED.
ARENA_MODERATION_TIMEOUT = env_float("ARENA_MODERATION_TIMEOUT", default=5.0)
# The categories of the endpoint that refuse a prompt; empty: whatever it flags.
ARENA_MODERATION_CATEGORIES = env.list("ARENA_MODERATION_CATEGORIES", default=[])
# When the endpoint fails: off, the prompt stands on the local rules (an outage of a third party does
# not close the arena); on, the prompt is refused with a 503 asking to try again.
ARENA_MODERATION_FAIL_CLOSED = env.bool("ARENA_MODERATION_FAIL_CLOSED", default=False)
# A visitor accepts the terms (/terms) before their first battle; a new version asks everyone again.
ARENA_REQUIRE_CONSENT = env.bool("ARENA_REQUIRE_CONSENT", default=True)
ARENA_TERMS_VERSION = env.str("ARENA_TERMS_VERSION", default="2026-12-07")
# The gate in front of a battle (arena/gate.py): a proof-of-work challenge ("altcha") or none ("off").
# Or a vendor's bot check, verified server-side by its siteverify API (arena/captcha.py): "turnstile",
# "hcaptcha", "recaptcha", with the vendor's secret key and its widget's site key: the battle pages
# then load the vendor's widget, and their Content-Security-Policy allows its origins (arena/views.py).
ARENA_CHALLENGE = env.str("ARENA_CHALLENGE", default="altcha")
if ARENA_CHALLENGE not in ("altcha", "off", "turnstile", "hcaptcha", "recaptcha"):
    raise ImproperlyConfigured(
        'ARENA_CHALLENGE must be "altcha", "off", "turnstile", "hcaptcha" or "recaptcha"'
    )
ARENA_CHALLENGE_SECRET = env.str("ARENA_CHALLENGE_SECRET", default="")
ARENA_CHALLENGE_SITE_KEY = env.str("ARENA_CHALLENGE_SITE_KEY", default="")
if ARENA_CHALLENGE in ("turnstile", "hcaptcha", "recaptcha") and not ARENA_CHALLENGE_SECRET:
    raise ImproperlyConfigured(f"ARENA_CHALLENGE={ARENA_CHALLENGE} needs ARENA_CHALLENGE_SECRET")
if ARENA_CHALLENGE in ("turnstile", "hcaptcha", "recaptcha") and not ARENA_CHALLENGE_SITE_KEY:
    # Without it the page shows no widget, so no battle could ever open.
    raise ImproperlyConfigured(f"ARENA_CHALLENGE={ARENA_CHALLENGE} needs ARENA_CHALLENGE_SITE_KEY")
# The vendor's siteverify URL (default: the vendor's documented one) and seconds to wait for it.
ARENA_CHALLENGE_VERIFY_URL = env.str("ARENA_CHALLENGE_VERIFY_URL", default="")
ARENA_CHALLENGE_VERIFY_TIMEOUT = env_float("ARENA_CHALLENGE_VERIFY_TIMEOUT", default=5.0)
# Signs challenges; derived from SECRET_KEY unless set, so a fresh clone needs nothing.
ARENA_CHALLENGE_HMAC_KEY = env.str(
    "ARENA_CHALLENGE_HMAC_KEY", default=hashlib.sha256(f"arena.challenge:{SECRET_KEY}".encode()).hexdigest()
)
ARENA_CHALLENGE_SECONDS = env.int("ARENA_CHALLENGE_SECONDS", default=600)
# Proof-of-work: the numbers a solver may have to hash (half as many on average) for a visitor and a
# network with no battle this hour; doubled for every STEP battles the visitor / network opened this hour.
ARENA_POW_BASE = env.int("ARENA_POW_BASE", default=50_000)
ARENA_POW_VISITOR_STEP = env.int("ARENA_POW_VISITOR_STEP", default=10)
ARENA_POW_NETWORK_STEP = env.int("ARENA_POW_NETWORK_STEP", default=40)
ARENA_POW_MAX = env.int("ARENA_POW_MAX", default=20_000_000)
# Caps, per visitor (cookie) and per network (/24 or /48), counted in the cache.
ARENA_VOTES_PER_VISITOR_DAY = env.int("ARENA_VOTES_PER_VISITOR_DAY", default=50)
ARENA_VOTES_PER_NETWORK_DAY = env.int("ARENA_VOTES_PER_NETWORK_DAY", default=200)
ARENA_BATTLES_PER_VISITOR_HOUR = env.int("ARENA_BATTLES_PER_VISITOR_HOUR", default=60)
ARENA_BATTLES_PER_NETWORK_HOUR = env.int("ARENA_BATTLES_PER_NETWORK_HOUR", default=240)
# Battles whose answers are still to stream or streaming, at once.
ARENA_OPEN_BATTLES_PER_VISITOR = env.int("ARENA_OPEN_BATTLES_PER_VISITOR", default=3)
ARENA_OPEN_BATTLES_PER_NETWORK = env.int("ARENA_OPEN_BATTLES_PER_NETWORK", default=30)
# A vote cast sooner after the answers finished than their length at this reading speed is kept but
# not counted (too_fast): about twice a fast reader's pace.
ARENA_READING_CHARS_PER_SECOND = env_float("ARENA_READING_CHARS_PER_SECOND", default=50.0)
# The anomalous-voter detector (leaderboard.integrity): flag a voter when a test's p-value, doubled,
# is at most alpha; voters with fewer votes are never scored. Never shown in a public response.
LEADERBOARD_DETECTOR_ALPHA = env_float("LEADERBOARD_DETECTOR_ALPHA", default=0.005)
LEADERBOARD_DETECTOR_MIN_VOTES = env.int("LEADERBOARD_DETECTOR_MIN_VOTES", default=10)
LEADERBOARD_DETECTOR_CHECKPOINTS = env.int("LEADERBOARD_DETECTOR_CHECKPOINTS", default=5)
# A visitor or network counts a prompt once per window (seconds); a prompt counted more often than
# ARENA_DUPLICATE_PROMPT_MAX keeps a fixed sample of that many votes (FastChat's rule).
ARENA_DUPLICATE_PROMPT_WINDOW = env.int("ARENA_DUPLICATE_PROMPT_WINDOW", default=86400)
ARENA_DUPLICATE_PROMPT_MAX = env.int("ARENA_DUPLICATE_PROMPT_MAX", default=100)
# How anonymous battles draw their pair (arena.sampling): "active" (the default) from the plan the
# latest overall snapshot wrote, by the operator weights until there is one; "weights" by the
# operator weights alone. Each battle stores the probability its pair had (its propensity).
ARENA_SAMPLER = env.str("ARENA_SAMPLER", default="active")
if ARENA_SAMPLER not in ("active", "weights"):
    raise ImproperlyConfigured(f'ARENA_SAMPLER must be "active" or "weights", not {ARENA_SAMPLER!r}')
# The active sampler's share of draws spread evenly over every pair that can be drawn: no pair
# falls below floor/pairs, so an inverse-propensity weight stays within 1/floor of a uniform one's.
ARENA_SAMPLER_FLOOR = env_float("ARENA_SAMPLER_FLOOR", default=0.2)
# Its share of draws for pairs with a new model: one with fewer votes on the board than
# ARENA_SAMPLER_NEW_MODEL_VOTES (or none, drawn after the latest snapshot).
ARENA_SAMPLER_BOOST = env_float("ARENA_SAMPLER_BOOST", default=0.2)
ARENA_SAMPLER_NEW_MODEL_VOTES = env.int("ARENA_SAMPLER_NEW_MODEL_VOTES", default=300)
if not (0 < ARENA_SAMPLER_FLOOR <= 1 and 0 <= ARENA_SAMPLER_BOOST <= 1 - ARENA_SAMPLER_FLOOR):
    raise ImproperlyConfigured(
        "ARENA_SAMPLER_FLOOR must be above 0 and at most 1, and ARENA_SAMPLER_BOOST between 0 and "
        "1 - ARENA_SAMPLER_FLOOR"
    )
# Both answers reach the voter on one schedule (a common start, then the same number of characters
# each tick, bounded by the slower side), so neither's timing tells the two models apart.
ARENA_PACED_RELAY = env.bool("ARENA_PACED_RELAY", default=True)
ARENA_PACED_TICK = env_float("ARENA_PACED_TICK", default=0.05)  # seconds between two releases
# Recompute the board right after each vote (debounced by the recompute lock); beat covers the rest.
LEADERBOARD_RECOMPUTE_ON_VOTE = env.bool("LEADERBOARD_RECOMPUTE_ON_VOTE", default=not REDIS_URL)
# Sandwich (robust, closed-form) intervals by default, as LMArena's board since 2025; "bootstrap"
# for the percentile bootstrap with the rounds below.
LEADERBOARD_INTERVALS = env.str("LEADERBOARD_INTERVALS", default="sandwich")
if LEADERBOARD_INTERVALS not in ("sandwich", "bootstrap"):
    raise ImproperlyConfigured(
        f'LEADERBOARD_INTERVALS must be "sandwich" or "bootstrap", not {LEADERBOARD_INTERVALS!r}'
    )
LEADERBOARD_BOOTSTRAP = env.int("LEADERBOARD_BOOTSTRAP", default=1000)
LEADERBOARD_SEED = env.int("LEADERBOARD_SEED", default=42)
LEADERBOARD_STYLE_BOOTSTRAP = env.int("LEADERBOARD_STYLE_BOOTSTRAP", default=100)
# Rounds of the category boards (coding, languages, ...), fewer than the overall board's: the
# Monte Carlo error of a 95% bound is about 0.17 of a rating's standard error at 250 rounds (0.08
# at 1,000), small beside intervals that wide, and sixteen boards cost a quarter as much. Each
# snapshot records its own.
LEADERBOARD_CATEGORY_BOOTSTRAP = env.int("LEADERBOARD_CATEGORY_BOOTSTRAP", default=250)
# Latency figures on the board come from answers finished in this many days (the index on
# (status, finished) keeps the read bounded as history grows).
LEADERBOARD_LATENCY_DAYS = env.int("LEADERBOARD_LATENCY_DAYS", default=30)
# Threads a provider's private-variant rating runs on (same results for any number; BLAS is held
# to one thread).
LEADERBOARD_WORKERS = env.int("LEADERBOARD_WORKERS", default=2)
# Threads a recompute's fits share, every board's bootstrap rounds included (the style board's
# fit starts first; same results for any number).
LEADERBOARD_FIT_THREADS = env.int("LEADERBOARD_FIT_THREADS", default=2)
# Below this many votes a model is provisional on the overall board and absent from category boards.
LEADERBOARD_MIN_VOTES = env.int("LEADERBOARD_MIN_VOTES", default=300)

# --- Upstream calls ------------------------------------------------------------------------------
UPSTREAM_CONNECT_TIMEOUT = env_float("UPSTREAM_CONNECT_TIMEOUT", default=10.0)
UPSTREAM_FIRST_TOKEN_TIMEOUT = env_float("UPSTREAM_FIRST_TOKEN_TIMEOUT", default=60.0)
UPSTREAM_TOTAL_TIMEOUT = env_float("UPSTREAM_TOTAL_TIMEOUT", default=300.0)
# Connections one web process holds to the upstreams (each battle streams two answers at once), and
# seconds an idle one is kept for the next call: it spares the TCP and TLS handshakes.
UPSTREAM_MAX_CONNECTIONS = env.int("UPSTREAM_MAX_CONNECTIONS", default=2048)
UPSTREAM_KEEPALIVE_EXPIRY = env_float("UPSTREAM_KEEPALIVE_EXPIRY", default=30.0)
# Seconds between two words of a demo model's answer: human-readable pace.
DEMO_TOKEN_DELAY = env_float("DEMO_TOKEN_DELAY", default=0.03)

# --- Local GPU serving (serving/, `manage.py serve_local`) -----------------------------------------
VLLM_EXECUTABLE = env.str("VLLM_EXECUTABLE", default="vllm")
# Seconds to wait for a server's /health after launch (loading large weights takes minutes).
SERVING_STARTUP_TIMEOUT = env_float("SERVING_STARTUP_TIMEOUT", default=1800.0)
SERVING_POLL_INTERVAL = env_float("SERVING_POLL_INTERVAL", default=2.0)
SERVING_HEALTH_TIMEOUT = env_float("SERVING_HEALTH_TIMEOUT", default=5.0)
# Failed health checks in a row before a server counts as down and is restarted.
SERVING_HEALTH_FAILURES = env.int("SERVING_HEALTH_FAILURES", default=3)
SERVING_RESTART_BACKOFF = env_float("SERVING_RESTART_BACKOFF", default=5.0)
SERVING_RESTART_BACKOFF_MAX = env_float("SERVING_RESTART_BACKOFF_MAX", default=300.0)
# Failures in a row before the supervisor gives up and leaves the model in outage.
SERVING_MAX_FAILURES = env.int("SERVING_MAX_FAILURES", default=5)
# Seconds of good health after which the failure count starts again from zero.
SERVING_STABLE_AFTER = env_float("SERVING_STABLE_AFTER", default=600.0)
SERVING_STOP_GRACE = env_float("SERVING_STOP_GRACE", default=30.0)
# Saturation: more queued requests than this, or a fuller KV cache, takes a model out of the draw.
SERVING_MAX_WAITING = env.int("SERVING_MAX_WAITING", default=0)
SERVING_MAX_KV_CACHE = env_float("SERVING_MAX_KV_CACHE", default=0.95)

# --- REST framework -------------------------------------------------------------------------------
# Request bodies: larger ones get a 413, and JSON nested deeper a 400 (config/parsers.py). A prompt
# is at most ARENA_PROMPT_MAX_CHARS characters, far below either.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=1024 * 1024)
API_JSON_MAX_DEPTH = env.int("API_JSON_MAX_DEPTH", default=32)
REST_FRAMEWORK = {
    # The battle API is anonymous: a battle belongs to the visitor (signed cookie) that opened it.
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["config.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "config.errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"battle_turn": ARENA_TURN_RATE},
    # DRF's throttles read X-Forwarded-For as config.clients.client_address does.
    "NUM_PROXIES": TRUSTED_PROXIES,
    "DEFAULT_SCHEMA_CLASS": "config.schema.AutoSchema",
}
# OpenAPI schema at /api/v1/schema/, docs at /api/v1/docs/; Swagger UI and Redoc are served from
# drf-spectacular-sidecar's static files, never from a CDN.
SPECTACULAR_SETTINGS = {
    "TITLE": "Open LLM Arena API",
    "DESCRIPTION": "Public reads (leaderboard, models, testing ledger) and the provider API for "
    "testing private variants (`Authorization: Api-Key <key>`).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1/",
    "COMPONENT_SPLIT_REQUEST": True,
    # What a caller reads is written for them in extend_schema; docstrings are for this code's readers.
    "DISABLE_DOCSTRING_DESCRIPTIONS": True,
    # The stream, the downloads and the health check are plain Django views (config.schema).
    "PREPROCESSING_HOOKS": ["config.schema.plain_views"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "BackendEnum": "providers.models.LLM.Backend",
        "RemoteBackendEnum": "providers.api.BACKENDS",
        "StateEnum": "providers.models.LLM.State",
        "BattleStateEnum": "arena.models.Battle.State",
    },
}

# --- Static files ----------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Security (production) --------------------------------------------------------------------------
if not DEBUG:
    if TRUSTED_PROXIES:  # a client's own X-Forwarded-Proto must not pass for TLS
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # httpx logs every request line at INFO; upstream URLs are operator data, keep them out of logs.
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}

# --- Provider testing rules
# Each rule is enforced in code (providers/variants.py, LLM.objects.drawable(), leaderboard.services)
# and tested in tests/providers/test_rules.py; README.md ("Provider API") explains them to providers.
# Private variants one organisation may have under test at once (a 4th submission gets a 409).
PROVIDER_MAX_VARIANTS_UNDER_TEST = env.int("PROVIDER_MAX_VARIANTS_UNDER_TEST", default=3)
# Sampling weight of every variant, whoever submits it; providers cannot choose it.
PROVIDER_VARIANT_WEIGHT = env_float("PROVIDER_VARIANT_WEIGHT", default=1.0)
# Votes a private variant collects before it leaves the draw, until published or retired.
PROVIDER_VARIANT_BUDGET = env.int("PROVIDER_VARIANT_BUDGET", default=5000)
# No retraction: a variant that stopped with this many votes has its final rating disclosed on the
# testing ledger when its organisation publishes any variant, or this many days after it stopped.
PROVIDER_DISCLOSURE_MIN_VOTES = env.int("PROVIDER_DISCLOSURE_MIN_VOTES", default=1000)
PROVIDER_DISCLOSURE_DELAY_DAYS = env.int("PROVIDER_DISCLOSURE_DELAY_DAYS", default=90)
# Fresh votes: a published variant's public rating is provisional until it has this many votes
# collected after publication; from then on the public board counts only those.
PROVIDER_FRESH_VOTES = env.int("PROVIDER_FRESH_VOTES", default=2000)
# A variant's private result is flagged (to its organisation and operators) when one visitor or one
# network cast more than this share of the votes behind it: a result a few people, or its own
# organisation, could have made.
PROVIDER_VOTER_MAX_SHARE = env_float("PROVIDER_VOTER_MAX_SHARE", default=0.2)
# Requests per API key (DRF rate), and submissions per key (each probes the endpoint).
PROVIDER_API_RATE = env.str("PROVIDER_API_RATE", default="120/minute")
PROVIDER_SUBMIT_RATE = env.str("PROVIDER_SUBMIT_RATE", default="30/hour")
# Seconds the probe of a submitted endpoint may take in all.
PROVIDER_PROBE_TIMEOUT = env_float("PROVIDER_PROBE_TIMEOUT", default=10.0)
# Whether a variant may live at a loopback, private or link-local address or speak plain http.
# Off in production, so that a submitted base_url cannot reach the arena's own network.
PROVIDER_ALLOW_PRIVATE_URLS = env.bool("PROVIDER_ALLOW_PRIVATE_URLS", default=DEBUG)
# Fernet keys (comma-separated; the first encrypts, all decrypt) for the variants' stored API keys.
# Make one: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"
# Required in production: without it no provider variant's key could be stored.
FIELD_ENCRYPTION_KEY = env.list("FIELD_ENCRYPTION_KEY", default=[])
if not FIELD_ENCRYPTION_KEY and not DEBUG:
    raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY is required when DEBUG is off (see .env.example)")
if not FIELD_ENCRYPTION_KEY and DEBUG:
    # Development only: derived from SECRET_KEY (the same derivation as providers.crypto.derived_key).
    _digest = hashlib.sha256(b"arena.field-encryption:" + SECRET_KEY.encode()).digest()
    FIELD_ENCRYPTION_KEY = [base64.urlsafe_b64encode(_digest).decode()]
for _key in FIELD_ENCRYPTION_KEY:
    try:
        _valid = len(base64.urlsafe_b64decode(_key.encode())) == 32
    except ValueError:
        _valid = False
    if not _valid:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY: each key must be a Fernet key (see .env.example)")
