from django.apps import AppConfig


class MailingsConfig(AppConfig):
    name = "mailings"

    def ready(self):
        from . import signals  # noqa: F401  (connects the launch hook)
