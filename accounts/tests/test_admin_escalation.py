"""No way up through the admin: only superusers give superuser status, groups and permissions (to
users and to groups), nobody changes their own, and only superusers change a superuser's account."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from accounts.roles import ADMINS, OPERATORS, VIEWERS
from conftest import user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def administrator(django_user_model):
    """Staff in the admins group: manages users and tokens, is no superuser."""
    user = user_with_role(django_user_model, "administrator", ADMINS)
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


@pytest.fixture
def viewer_user(django_user_model):
    return user_with_role(django_user_model, "someone", VIEWERS)


def change_url(user) -> str:
    return reverse("admin:auth_user_change", args=[user.pk])


def post_user(client, user, **role):
    """The change form as a browser sends it, with the user's own values and `role` on top."""
    data = {
        "username": user.username,
        "email": user.email,
        "is_active": "on",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "groups": [group.pk for group in user.groups.all()],
        **role,
    }
    return client.post(change_url(user), data)


def permission(codename: str) -> Permission:
    return Permission.objects.get(codename=codename)


def test_an_administrator_cannot_make_itself_superuser(client, administrator):
    client.force_login(administrator)

    response = post_user(client, administrator, is_staff="on", is_superuser="on")

    assert response.status_code == 302
    administrator.refresh_from_db()
    assert not administrator.is_superuser


def test_an_administrator_cannot_give_itself_a_permission_or_group(client, administrator):
    client.force_login(administrator)
    operators = Group.objects.get(name=OPERATORS)

    post_user(
        client,
        administrator,
        is_staff="on",
        groups=[administrator.groups.get().pk, operators.pk],
        user_permissions=[permission("delete_logentry").pk],
    )

    assert list(administrator.groups.values_list("name", flat=True)) == [ADMINS]
    assert not administrator.user_permissions.exists()


def test_an_administrator_cannot_give_another_user_superuser_groups_or_permissions(
    client, administrator, viewer_user
):
    client.force_login(administrator)

    response = post_user(
        client,
        viewer_user,
        email="someone@example.com",
        is_staff="on",
        is_superuser="on",
        groups=[Group.objects.get(name=ADMINS).pk],
        user_permissions=[permission("view_phone").pk],
    )

    assert response.status_code == 302
    viewer_user.refresh_from_db()
    # What an administrator may change: the account's details and its staff status.
    assert (viewer_user.email, viewer_user.is_staff, viewer_user.is_superuser) == (
        "someone@example.com",
        True,
        False,
    )
    assert list(viewer_user.groups.values_list("name", flat=True)) == [VIEWERS]
    assert not viewer_user.user_permissions.exists()


def test_an_administrator_cannot_change_a_groups_permissions(client, administrator):
    client.force_login(administrator)
    admins = Group.objects.get(name=ADMINS)
    before = set(admins.permissions.values_list("pk", flat=True))

    client.post(
        reverse("admin:auth_group_change", args=[admins.pk]),
        {"name": ADMINS, "permissions": list(Permission.objects.values_list("pk", flat=True))},
    )

    assert set(admins.permissions.values_list("pk", flat=True)) == before


def test_an_administrator_cannot_change_a_superusers_password_or_details(client, administrator, admin_user):
    client.force_login(administrator)
    password_url = reverse("admin:auth_user_password_change", args=[admin_user.pk])

    password = client.post(
        password_url, {"password1": "taken-over-1x", "password2": "taken-over-1x", "usable_password": "true"}
    )
    details = post_user(client, admin_user, email="attacker@example.com", is_staff="on", is_superuser="on")

    assert password.status_code == 403
    assert details.status_code == 403
    admin_user.refresh_from_db()
    assert admin_user.check_password("password")
    assert admin_user.email != "attacker@example.com"


def test_an_administrator_cannot_take_over_an_account_that_may_do_more(client, administrator, viewer_user):
    viewer_user.user_permissions.add(permission("delete_logentry"))  # given by a superuser
    client.force_login(administrator)

    response = client.post(
        reverse("admin:auth_user_password_change", args=[viewer_user.pk]),
        {"password1": "taken-over-1x", "password2": "taken-over-1x", "usable_password": "true"},
    )

    assert response.status_code == 403


def test_a_superuser_gives_roles_to_others_but_cannot_change_its_own(client, admin_user, viewer_user):
    client.force_login(admin_user)
    admins = Group.objects.get(name=ADMINS)

    post_user(client, viewer_user, is_staff="on", is_superuser="on", groups=[admins.pk])
    post_user(client, admin_user, groups=[admins.pk])  # is_staff and is_superuser left off

    viewer_user.refresh_from_db()
    admin_user.refresh_from_db()
    assert (viewer_user.is_staff, viewer_user.is_superuser) == (True, True)
    assert list(viewer_user.groups.values_list("name", flat=True)) == [ADMINS]
    assert (admin_user.is_staff, admin_user.is_superuser) == (True, True)
    assert not admin_user.groups.exists()


def test_a_superuser_changes_a_groups_permissions(client, admin_user):
    client.force_login(admin_user)
    viewers = Group.objects.get(name=VIEWERS)

    client.post(
        reverse("admin:auth_group_change", args=[viewers.pk]),
        {"name": VIEWERS, "permissions": [permission("view_phone").pk]},
    )

    assert list(viewers.permissions.values_list("codename", flat=True)) == ["view_phone"]
