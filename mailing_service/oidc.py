"""OpenID Connect login for the admin (mozilla-django-oidc), on when OIDC_ENABLED is set.

The identity provider says who someone is and, in one claim (OIDC_ROLES_CLAIM, `groups` by default),
which roles they hold; OIDC_ROLE_GROUPS maps those role names to this deployment's Django groups
(`operators`, `viewers`, `admins`), which carry the permissions. A person with no mapped role is
refused. Every login brings the mapped groups in line with the claim and makes the user staff, so
a role taken away at the provider is gone here at the next login. Superuser status is never given
through this path, and groups outside the mapping (given by hand) are left alone.

Users are matched by e-mail address, the library's default, and created at the first login.
"""

import logging

import requests
from django.conf import settings
from django.contrib.auth.models import Group
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

logger = logging.getLogger(__name__)


def mapped_groups(claims: dict) -> set[str]:
    """The Django group names the claims' roles map to."""
    roles = claims.get(settings.OIDC_ROLES_CLAIM) or []
    if isinstance(roles, str):
        roles = roles.split()
    return {settings.OIDC_ROLE_GROUPS[role] for role in roles if role in settings.OIDC_ROLE_GROUPS}


class RoleMappingOIDCBackend(OIDCAuthenticationBackend):
    def authenticate(self, request, **kwargs):
        # The library lets the provider's refusals (a replayed or forged code, an endpoint down)
        # escape as HTTP errors, which would be a 500; they are a failed login.
        try:
            return super().authenticate(request, **kwargs)
        except requests.RequestException as error:
            logger.warning("OIDC login failed at the provider: %s", error)
            return None

    def verify_claims(self, claims):
        if not claims.get("email"):
            return False
        if not mapped_groups(claims):
            logger.warning("OIDC login refused: no mapped role in claim %r", settings.OIDC_ROLES_CLAIM)
            return False
        return True

    def create_user(self, claims):
        user = self.UserModel.objects.create_user(
            claims.get("preferred_username") or self.get_username(claims), email=claims["email"]
        )
        return self.update_user(user, claims)

    def update_user(self, user, claims):
        wanted = mapped_groups(claims)
        existing = Group.objects.filter(name__in=wanted)
        missing = wanted - {group.name for group in existing}
        if missing:
            logger.warning("OIDC roles map to groups that do not exist: %s", ", ".join(sorted(missing)))
        managed = set(settings.OIDC_ROLE_GROUPS.values())
        user.groups.remove(*Group.objects.filter(name__in=managed - wanted))
        user.groups.add(*existing)
        user.is_staff = True
        user.save(update_fields=["is_staff"])
        return user
