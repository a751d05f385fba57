from __future__ import annotations

import os

from celery import Celery
from celery.signals import heartbeat_sent

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("arena")
# Every Celery setting lives in config/settings.py under the CELERY_ prefix, commented there.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@heartbeat_sent.connect
def worker_heartbeat(**kwargs: object) -> None:
    """A live worker, for /readyz (config.health); imported here, once Django is set up."""
    from config.health import worker_heartbeat

    worker_heartbeat(**kwargs)
