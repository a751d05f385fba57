from __future__ import annotations

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from django.views.decorators.cache import cache_control
from django.views.i18n import JavaScriptCatalog, set_language
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework import serializers

from config.health import healthz, readyz
from config.metrics import metrics
from config.schema import plain_view_schema

handler400 = "config.errors.bad_request"
handler404 = "config.errors.not_found"
handler500 = "config.errors.server_error"

# Swagger UI and Redoc set styles from their scripts (Redoc's styled-components write <style>
# elements), and Redoc's search runs in a worker made from a blob. Their scripts still come from
# this site's files only: the split Swagger view serves its start-up script as a file of its own.
docs_policy = csp_update({"style-src": [UNSAFE_INLINE], "worker-src": [SELF, "blob:"]})

HEALTH = inline_serializer("Health", {"status": serializers.ChoiceField(choices=["ok"])})
health = plain_view_schema(
    operation_id="healthz",
    summary="Liveness check",
    description="For liveness probes and container health checks: the process answers. It asks "
    "neither the database nor the cache (see /readyz), so that an outage of either does not get "
    "healthy processes restarted. No authentication.",
    responses={200: OpenApiResponse(HEALTH, description="The process answers.")},
)
CHECK = inline_serializer(
    "ReadinessCheck",
    {
        "state": serializers.CharField(
            help_text='ok; "not used" where this deployment does without it (the broker and the '
            "worker when tasks run in the web process); otherwise what is wrong: stale, no "
            "heartbeat, or the name of the error it raised."
        ),
        "required": serializers.BooleanField(help_text="Whether this check failing makes the answer 503."),
        "age_seconds": serializers.FloatField(required=False, help_text="worker: age of its last heartbeat."),
        "lag_seconds": serializers.FloatField(
            required=False, help_text="snapshot: how long the oldest vote not yet on the board has waited."
        ),
    },
)
READINESS = inline_serializer(
    "Readiness",
    {
        "status": serializers.ChoiceField(choices=["ok", "unready"]),
        "checks": serializers.DictField(
            child=CHECK, help_text="By name: database, cache, broker, worker, snapshot."
        ),
    },
)
ready = plain_view_schema(
    operation_id="readyz",
    summary="Readiness check",
    description="For readiness probes and monitors: whether the database, the cache, the task "
    "broker, a live worker and a current leaderboard are there, each with its state. Which of them "
    "are required is the deployment's choice. No authentication.",
    responses={
        200: OpenApiResponse(READINESS, description="Every required check is ok or not used."),
        503: OpenApiResponse(READINESS, description="A required check failed: its state says why."),
    },
)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health(healthz), name="healthz"),
    path("readyz", ready(readyz), name="readyz"),
    path("metrics", metrics, name="metrics"),
    # The header's language switcher posts here (a form, CSRF-checked; it sets the language cookie).
    path("i18n/setlang/", set_language, name="set_language"),
    # The JS strings of the active language, a script file (the CSP allows no inline one); pages
    # ask for it with ?lang=<code>, so that a browser's cached copy is one language's.
    path(
        "jsi18n/",
        cache_control(public=True, max_age=60 * 60)(JavaScriptCatalog.as_view()),
        name="javascript-catalog",
    ),
    path("", include("arena.urls")),
    path("", include("leaderboard.urls")),
    path("", include("providers.urls")),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "api/v1/docs/",
        docs_policy(SpectacularSwaggerSplitView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path(
        "api/v1/redoc/",
        docs_policy(SpectacularRedocView.as_view(url_name="api-schema", template_name="docs/redoc.html")),
        name="api-redoc",
    ),
]
