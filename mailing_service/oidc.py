"""OpenID Connect login for the admin (mozilla-django-oidc), on when OIDC_ENABLED is set.

The identity provider says who someone is and, in one claim (OIDC_ROLES_CLAIM, `groups` by default),
which roles they hold; OIDC_ROLE_GROUPS maps those role names to this deployment's Django groups
(`operators`, `viewers`, `admins`), which carry the permissions. A person with no mapped role is
refused. Every login brings the mapped groups in line with the claim, and staff status with them
(staff: a member of one of OIDC_STAFF_GROUPS, the roles that use the admin), so a role taken away at
the provider is gone here at the next login. Groups outside the mapping (given by hand) are left alone.

Users are matched by the provider's subject (`sub`, stored in accounts.SingleSignOnIdentity). A
person's first login links an account with the same e-mail only when the provider vouches for the
address (`email_verified`) and the account has no subject yet; otherwise a new user is created.
A superuser is never logged in this way: whoever controls the provider does not become one here.
"""

import logging

import requests
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from accounts.models import SingleSignOnIdentity

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

    def get_userinfo(self, access_token, id_token, payload):
        claims = super().get_userinfo(access_token, id_token, payload)
        # OpenID Connect Core 5.3.2: the userinfo answer is about the ID token's subject, or is not used.
        if claims.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("The userinfo subject is not the ID token's")
        return claims

    def verify_claims(self, claims):
        if not claims.get("sub") or not claims.get("email"):
            return False
        if not mapped_groups(claims):
            logger.warning("OIDC login refused: no mapped role in claim %r", settings.OIDC_ROLES_CLAIM)
            return False
        return True

    def filter_users_by_claims(self, claims):
        by_subject = self.UserModel.objects.filter(single_sign_on__subject=claims["sub"])
        if by_subject.exists() or claims.get("email_verified") not in (True, "true"):
            return by_subject
        return self.UserModel.objects.filter(email__iexact=claims["email"], single_sign_on__isnull=True)

    def create_user(self, claims):
        username = claims.get("preferred_username") or self.get_username(claims)
        if self.UserModel.objects.filter(username=username).exists():
            # A local account's name is no claim on that account.
            username = f"sso-{claims['sub']}"[:150]
        user = self.UserModel.objects.create_user(username, email=claims["email"])
        return self.update_user(user, claims)

    def update_user(self, user, claims):
        if user.is_superuser:
            logger.warning("OIDC login refused: user %s is a superuser", user.pk)
            raise SuspiciousOperation("Single sign-on never logs in a superuser")
        SingleSignOnIdentity.objects.get_or_create(user=user, subject=claims["sub"])
        wanted = mapped_groups(claims)
        existing = Group.objects.filter(name__in=wanted)
        missing = wanted - {group.name for group in existing}
        if missing:
            logger.warning("OIDC roles map to groups that do not exist: %s", ", ".join(sorted(missing)))
        managed = set(settings.OIDC_ROLE_GROUPS.values())
        user.groups.remove(*Group.objects.filter(name__in=managed - wanted))
        user.groups.add(*existing)
        user.is_staff = bool(wanted & set(settings.OIDC_STAFF_GROUPS))
        user.save(update_fields=["is_staff"])
        return user
