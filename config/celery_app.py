from __future__ import annotations

import os

from celery import Celery
from celery.signals import (
    before_task_publish,
    heartbeat_sent,
    setup_logging,
    task_postrun,
    task_prerun,
)

from config import logs

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


@setup_logging.connect
def django_logging(**kwargs: object) -> None:
    """The worker logs as the web does (settings.LOGGING: LOG_FORMAT, LOG_LEVEL, the request id),
    not in Celery's own format."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


# A task's log lines carry the id of the request that queued it (config/logs.py).
before_task_publish.connect(logs.task_published, weak=False)
task_prerun.connect(logs.task_started, weak=False)
task_postrun.connect(logs.task_finished, weak=False)
