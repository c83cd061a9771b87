import logging

from django.conf import settings

from mailing_service.log_filters import RoutineTaskFilter

SCAN = "mailings.tasks.launch_due_mailings"


def record(level: int, message: str, **args) -> logging.LogRecord:
    return logging.LogRecord("celery.app.trace", level, __file__, 1, message, (args,), None)


def test_info_lines_of_periodic_tasks_are_dropped_and_every_other_line_passes():
    routine = RoutineTaskFilter([SCAN])

    assert not routine.filter(record(logging.INFO, "Task %(name)s[%(id)s] received", name=SCAN, id="1"))
    assert routine.filter(
        record(logging.INFO, "Task %(name)s[%(id)s] received", name="mailings.tasks.launch_mailing", id="2")
    )
    assert routine.filter(record(logging.ERROR, "Task %(name)s[%(id)s] raised unexpected", name=SCAN, id="3"))


def test_the_filter_covers_every_task_beat_schedules_on_the_loggers_that_announce_them():
    filters = settings.LOGGING["filters"]["routine_tasks"]
    assert sorted(filters["tasks"]) == sorted(
        entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()
    )
    for logger in ("celery.beat", "celery.worker.strategy", "celery.app.trace"):
        assert settings.LOGGING["loggers"][logger]["filters"] == ["routine_tasks"]
