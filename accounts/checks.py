from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def secret_key_is_configured(app_configs, **kwargs):
    """The key file under var/ is for local runs: each machine or container would make its own, so
    sessions and password-reset links would not survive a restart or work across replicas."""
    if settings.SECRET_KEY_FROM_FILE:
        return [
            Warning(
                "DJANGO_SECRET_KEY is not set: the key is the local one generated in var/secret_key.",
                hint="Set DJANGO_SECRET_KEY (for example from a Kubernetes Secret).",
                id="accounts.W001",
            )
        ]
    return []
