"""Who is trying to log in to the admin, as the login lockout (django-axes) counts them."""

from django.http import HttpRequest
from rest_framework.throttling import BaseThrottle


def client_address(request: HttpRequest) -> str:
    """The client's address by the API limits' rule: REMOTE_ADDR, or behind DJANGO_TRUSTED_PROXY_COUNT
    proxies (REST_FRAMEWORK's NUM_PROXIES) the X-Forwarded-For entry the outermost trusted proxy wrote.
    Entries before it are the client's own word and count for nothing."""
    return BaseThrottle().get_ident(request)
