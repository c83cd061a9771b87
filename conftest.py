import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_user(username="operator", password="operator-password-1")


@pytest.fixture
def api_client(operator):
    """An API client authenticated with the operator's token, as a script would call the API."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=operator).key}")
    return client


@pytest.fixture
def anonymous_client():
    return APIClient()
