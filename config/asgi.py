"""The ASGI application: Django's own handler, served by uvicorn (`make run`) or by gunicorn's
uvicorn workers (the Dockerfile, docker-compose.yml)."""

from __future__ import annotations

import gc
import os

from django.core.asgi import get_asgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_asgi_application()

# Import every view module (and the rating code under them) with the process: on the first request
# that import would stall the event loop, and every answer streaming on it.
_url_patterns = get_resolver().url_patterns

# What is loaded by now lives as long as the process: keep it out of the collector's full passes,
# which would otherwise walk the whole heap in the middle of streams.
gc.freeze()
