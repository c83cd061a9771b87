import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery.signals import worker_process_init

from mailing_service.celery import tune_garbage_collector

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def restored_gc():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_a_pool_process_freezes_its_startup_objects_and_collects_young_ones_less_often(settings, restored_gc):
    settings.WORKER_GC_THRESHOLD = 12_345
    gc.unfreeze()
    older_generations = gc.get_threshold()[1:]

    tune_garbage_collector()

    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (12_345, *older_generations)


def test_the_tuning_runs_in_every_pool_process_as_it_starts():
    receivers = [ref() for _, ref in worker_process_init.receivers]
    assert tune_garbage_collector in receivers


def test_a_threshold_that_would_turn_the_collector_off_stops_the_start():
    env = {**os.environ, "WORKER_GC_THRESHOLD": "0"}
    result = subprocess.run(
        [sys.executable, "-c", "import mailing_service.settings"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "WORKER_GC_THRESHOLD must be at least 1" in result.stderr
