from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self):
        from . import checks  # noqa: F401  (registers the deploy checks)
        from .roles import grant_role_permissions

        # Models added later (by any app listed in roles.ROLE_APPS) join the roles at the next migrate.
        post_migrate.connect(grant_role_permissions, dispatch_uid="accounts.grant_role_permissions")
