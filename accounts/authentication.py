from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed, Throttled

from mailing_service.throttling import FailedAuthThrottle

from .models import token_expires_at


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, refusing tokens past their expiry (a revoked token is deleted),
    and answering 429 to an IP that sent too many wrong tokens, before looking the token up."""

    def authenticate(self, request):
        if "HTTP_AUTHORIZATION" not in request.META:
            return None  # no token: session authentication may follow
        throttle = FailedAuthThrottle()
        wait = throttle.seconds_blocked(request)
        if wait is not None:
            raise Throttled(wait, detail="Too many failed authentications from this address.")
        try:
            return super().authenticate(request)
        except AuthenticationFailed:
            throttle.record_failure(request)
            raise

    def authenticate_credentials(self, key):
        try:
            # One query for the token, its user and its own expiry, as DRF's does for the first two.
            token = Token.objects.select_related("user", "expiry").get(key=key)
        except Token.DoesNotExist:
            raise AuthenticationFailed("Invalid token.") from None
        if not token.user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        expires_at = token_expires_at(token)
        if expires_at is not None and expires_at <= timezone.now():
            raise AuthenticationFailed("Token expired: ask for a new one (manage.py issue_api_token).")
        return token.user, token
