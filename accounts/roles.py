"""The three roles, as Django groups, and what each may do.

- operators: read and write clients, mailings, messages and the opt-out list (see phones in clear);
  exempting a mailing from the frequency cap only when an admin grants them that permission;
- viewers: read clients (phones masked), mailings, statistics and messages; write nothing;
- admins: what operators do, plus users, groups, API tokens and SMS providers (in the admin, being
  staff).

The API checks model permissions (accounts.permissions.RolePermission), so an endpoint added later
is covered by the permissions of its model: reading needs `view`, anything else `add`/`change`/`delete`.
"""

from django.apps import apps as global_apps
from django.contrib.auth.management import create_permissions
from django.db.models import Q, QuerySet

OPERATORS, VIEWERS, ADMINS = "operators", "viewers", "admins"
ROLE_GROUPS = {"operator": OPERATORS, "viewer": VIEWERS, "admin": ADMINS}
# The apps whose models the roles are about.
ROLE_APPS = ("clients", "mailings", "messages_app")
# Seeing a client's phone in clear: operators and admins; viewers see it masked.
VIEW_PHONE = "clients.view_phone"
# Exempting a mailing from the frequency cap: admins, and the operators an admin grants it to.
EXEMPT_FROM_CAP = "exempt_from_cap"
ADMIN_APPS = ("auth", "authtoken", "accounts", "providers")


def role_permissions(permission_model) -> dict[str, QuerySet]:
    """The permissions each role's group holds, as querysets of `permission_model`."""
    of_role_apps = permission_model.objects.filter(content_type__app_label__in=ROLE_APPS)
    return {
        OPERATORS: of_role_apps.exclude(codename=EXEMPT_FROM_CAP),
        VIEWERS: of_role_apps.filter(codename__startswith="view_").exclude(codename="view_phone"),
        ADMINS: permission_model.objects.filter(
            Q(content_type__app_label__in=ROLE_APPS) | Q(content_type__app_label__in=ADMIN_APPS)
        ),
    }


def ensure_role_groups(apps) -> None:
    """Create the three groups (if missing) and grant each its permissions; never removes any."""
    for app_label in {*ROLE_APPS, *ADMIN_APPS}:
        # Permissions are made after the last migration; a data migration needs them now.
        create_permissions(global_apps.get_app_config(app_label), apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, permissions in role_permissions(Permission).items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*permissions)


def grant_role_permissions(sender, apps=None, **kwargs) -> None:
    # `flush` (transactional tests) sends post_migrate without the migration state's apps.
    if sender.label == "accounts":
        ensure_role_groups(apps or global_apps)
