"""Counts Celery task runs, failures and durations (the worker's children write them; see ops.metrics)."""

import time

from celery.signals import task_postrun, task_prerun

from . import metrics

STATES = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}

_started: dict[str, float] = {}


@task_prerun.connect(dispatch_uid="ops_task_started")
def _task_started(task_id: str, **kwargs) -> None:
    _started[task_id] = time.perf_counter()


@task_postrun.connect(dispatch_uid="ops_task_ended")
def _task_ended(task_id: str, task, state: str | None = None, **kwargs) -> None:
    started = _started.pop(task_id, None)
    if started is not None:
        metrics.CELERY_TASK_SECONDS.labels(task.name).observe(time.perf_counter() - started)
    metrics.CELERY_TASKS.labels(task.name, STATES.get(state or "", "other")).inc()
