"""Filters for the LOGGING setting."""

import logging


class RoutineTaskFilter(logging.Filter):
    """Drops the INFO lines about periodic tasks: beat sending them, the worker receiving them and
    their success. When idle they would print every few seconds and bury everything else; their
    warnings and errors still pass, and LOG_LEVEL=DEBUG lets every line through."""

    def __init__(self, tasks: list[str]):
        super().__init__()
        self.tasks = tuple(tasks)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        message = record.getMessage()
        return not any(task in message for task in self.tasks)
