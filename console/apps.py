from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The operator console: the dashboard, a mailing's page with its pictures and buttons, and the
    daily statistics report. It reads and acts through the other apps and owns no model."""

    name = "console"
