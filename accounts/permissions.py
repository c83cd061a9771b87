from rest_framework.permissions import DjangoModelPermissions

_VIEW = ["%(app_label)s.view_%(model_name)s"]


class RolePermission(DjangoModelPermissions):
    """Model permissions for every API view (accounts.roles): reading (GET, HEAD, OPTIONS) needs the
    model's `view` permission, POST `add`, PUT and PATCH `change`, DELETE `delete`. An action a view
    adds later (POST /mailings/{id}/pause/) takes its method's rule with no code of its own."""

    perms_map = {**DjangoModelPermissions.perms_map, "GET": _VIEW, "HEAD": _VIEW, "OPTIONS": _VIEW}
