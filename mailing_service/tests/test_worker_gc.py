"""The garbage collector's tuning in worker pool processes (mailing_service.celery), each case in a
fresh interpreter: freezing is for the life of a process."""

import json

import pytest
from celery.signals import worker_process_init

from conftest import run_python
from mailing_service.celery import tune_garbage_collector

POOL_PROCESS_START = """
import gc, json, sys
import django
django.setup()
from mailing_service.celery import tune_garbage_collector
tune_garbage_collector()
walked = {id(o) for o in gc.get_objects()}  # what is frozen is no longer listed
sender_module = sys.modules.get("messages_app.sending.sender")
print(json.dumps({
    "threshold": gc.get_threshold()[0],
    "frozen": gc.get_freeze_count(),
    "sender_loaded": sender_module is not None,
    "sender_frozen": sender_module is not None and id(vars(sender_module)) not in walked,
}))
"""


def start_pool_process(**variables: str):
    return run_python(POOL_PROCESS_START, **variables)  # pytest-django set DJANGO_SETTINGS_MODULE


def test_a_pool_process_freezes_what_it_loaded_the_sender_included_and_collects_young_objects_less_often():
    result = start_pool_process(WORKER_GC_THRESHOLD="12345", SENDER_ENABLED="true")

    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout)
    assert state["threshold"] == 12345
    assert state["frozen"] > 50_000  # Django, the app and the sender's libraries
    assert state["sender_loaded"] and state["sender_frozen"]


def test_a_worker_that_only_runs_tasks_does_not_load_the_sender():
    result = start_pool_process(SENDER_ENABLED="false")

    assert result.returncode == 0, result.stderr
    assert not json.loads(result.stdout)["sender_loaded"]


def test_the_tuning_runs_in_every_pool_process_as_it_starts():
    receivers = [ref() for _, ref in worker_process_init.receivers]
    assert tune_garbage_collector in receivers


@pytest.mark.parametrize("threshold", ["0", "-5"])
def test_a_threshold_that_would_turn_the_collector_off_stops_the_start(threshold):
    result = start_pool_process(WORKER_GC_THRESHOLD=threshold)

    assert result.returncode != 0
    assert "WORKER_GC_THRESHOLD must be at least 1" in result.stderr
