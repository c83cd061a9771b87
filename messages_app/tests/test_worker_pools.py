"""Every kind of worker pool either runs its sender or refuses to start, saying why."""

from types import SimpleNamespace

import pytest

from messages_app import tasks


@pytest.fixture
def started(monkeypatch):
    """The senders the worker's signals would start (none is started for real here)."""
    starts: list[str] = []
    monkeypatch.setattr(tasks, "_start_sender", lambda: starts.append("sender"))
    monkeypatch.setattr(tasks, "_sender_thread", None)
    monkeypatch.setattr(tasks, "_main_process_sends", False)
    monkeypatch.setattr(tasks.signal, "signal", lambda *args: starts.append("SIGTERM handler"))
    return starts


def a_worker(pool: str):
    """What Celery hands `worker_init`: the worker, whose pool_cls is still the -P name."""
    return SimpleNamespace(pool_cls=pool)


def test_prefork_pool_processes_each_start_their_sender(started):
    tasks.check_pool(a_worker("prefork"))
    assert started == []  # the main process forks the pool: no thread of its own before that

    tasks.start_sender()  # worker_process_init, in each pool process

    assert started == ["sender", "SIGTERM handler"]


def test_a_solo_worker_runs_its_sender_in_its_own_process_and_keeps_celerys_sigterm(started):
    tasks.check_pool(a_worker("solo"))
    tasks.start_sender()  # solo sends worker_process_init from the main process

    assert started == ["sender"]


def test_a_threads_worker_starts_its_sender_itself(started):
    tasks.check_pool(a_worker("threads"))  # the thread pool sends no worker_process_init

    assert started == ["sender"]


@pytest.mark.parametrize("pool", ["gevent", "eventlet"])
def test_a_greenlet_pool_refuses_to_start_saying_why(started, pool, monkeypatch, caplog):
    greenlets = type("TaskPool", (), {"__module__": f"celery.concurrency.{pool}"})
    monkeypatch.setattr(tasks, "get_implementation", lambda name: greenlets)

    with pytest.raises(SystemExit, match=f"the {pool} pool cannot run a sender.*SENDER_ENABLED=false"):
        tasks.check_pool(a_worker(pool))

    assert started == []
    assert any(record.levelname == "CRITICAL" for record in caplog.records)


def test_a_worker_that_only_runs_tasks_may_use_any_pool(started, settings):
    settings.SENDER_ENABLED = False

    tasks.check_pool(a_worker("gevent"))

    assert started == []


def test_a_sender_that_cannot_be_built_is_tried_again_until_one_runs(monkeypatch):
    """No usable provider or the database away at start: the worker's sender thread keeps trying."""
    from messages_app import senders
    from messages_app.senders import NoProvider

    stopping = tasks.threading.Event()
    attempts: list[str] = []

    class Runs:
        holder = "test"

        def run(self) -> None:
            attempts.append("ran")
            stopping.set()

    def build():
        attempts.append("built")
        if len(attempts) < 3:
            raise NoProvider("no enabled provider has its token in the environment")
        return Runs()

    monkeypatch.setattr(senders, "sender_from_settings", build)
    monkeypatch.setattr(tasks, "_stopping", stopping)
    monkeypatch.setattr(stopping, "wait", lambda seconds: None)  # not a second each

    tasks._send_until_stopped()

    assert attempts == ["built", "built", "built", "ran"]
