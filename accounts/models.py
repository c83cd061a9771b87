from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from rest_framework.authtoken.models import Token


class TokenExpiry(models.Model):
    """When an API token stops working, if not API_TOKEN_LIFETIME_DAYS after it was made."""

    token = models.OneToOneField(Token, on_delete=models.CASCADE, primary_key=True, related_name="expiry")
    expires_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "token expiries"

    def __str__(self) -> str:
        return f"expires {self.expires_at:%Y-%m-%d %H:%M}"


def token_expires_at(token: Token) -> datetime | None:
    """The moment the token stops working; None when tokens do not expire (lifetime 0) and it has no
    expiry of its own."""
    try:
        return token.expiry.expires_at
    except TokenExpiry.DoesNotExist:
        pass
    if not settings.API_TOKEN_LIFETIME_DAYS:
        return None
    return token.created + timedelta(days=settings.API_TOKEN_LIFETIME_DAYS)


def masked_key(key: str) -> str:
    """Enough of a key to tell tokens apart in the admin, not enough to use it."""
    return f"{key[:4]}…" if key else ""


class SingleSignOnIdentity(models.Model):
    """Who a user is at the identity provider (mailing_service.oidc): its subject (`sub`), which
    stays when the person's e-mail there changes, and which matches them at every later login."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="single_sign_on"
    )
    subject = models.CharField(max_length=255, unique=True)

    class Meta:
        verbose_name_plural = "single sign-on identities"

    def __str__(self) -> str:
        return f"subject {self.subject}"
