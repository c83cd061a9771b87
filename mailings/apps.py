from django.apps import AppConfig
from django.conf import settings
from django.core import checks


class MailingsConfig(AppConfig):
    name = "mailings"

    def ready(self):
        from . import signals  # noqa: F401  (connects the launch hook)

        checks.register(check_default_local_window)


def check_default_local_window(**kwargs) -> list[checks.CheckMessage]:
    from .window import LocalWindow

    try:
        LocalWindow.parse(settings.DEFAULT_LOCAL_WINDOW)
    except ValueError as error:
        return [checks.Error(f"DEFAULT_LOCAL_WINDOW: {error}.", id="mailings.E001")]
    return []
