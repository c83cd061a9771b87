"""Browsers get an icon, from the site itself: admin pages name it, /favicon.ico leads to it."""

import pytest

pytestmark = pytest.mark.django_db


def test_admin_pages_name_the_sites_icon(admin_client):
    response = admin_client.get("/admin/")

    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in response.content.decode()


def test_favicon_ico_leads_to_the_icon_which_is_served(client):
    response = client.get("/favicon.ico", follow=True)

    assert response.redirect_chain == [("/static/favicon.svg", 301)]
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"


def test_favicon_ico_answers_reads_only(client):
    assert client.post("/favicon.ico").status_code == 405
