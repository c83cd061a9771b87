from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations"

    def ready(self):
        from . import celery_signals  # noqa: F401  (counts task runs and failures in workers)
