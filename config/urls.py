from __future__ import annotations

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
from rest_framework import serializers

from config.health import healthz
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
    summary="Health check",
    description="Liveness, for load balancers and container health checks: the process serves "
    "requests. It asks neither the database nor the cache, so it answers while they are away; "
    "API calls that need the database answer 503 meanwhile. No authentication.",
    responses={200: OpenApiResponse(HEALTH, description="The process serves requests.")},
)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health(healthz), name="healthz"),
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
