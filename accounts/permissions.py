from rest_framework.permissions import DjangoModelPermissions

_VIEW = ["%(app_label)s.view_%(model_name)s"]


class RolePermission(DjangoModelPermissions):
    """Model permissions for every API view (accounts.roles): reading (GET, HEAD, OPTIONS) needs the
    model's `view` permission, POST `add`, PUT and PATCH `change`, DELETE `delete`. An action a view
    adds later takes its method's rule with no code of its own, unless the view names the permission
    it needs in `action_permissions` ({"pause": "change"}: a POST that changes a mailing, as the
    admin console asks for the same action)."""

    perms_map = {**DjangoModelPermissions.perms_map, "GET": _VIEW, "HEAD": _VIEW, "OPTIONS": _VIEW}

    def has_permission(self, request, view):
        kind = getattr(view, "action_permissions", {}).get(getattr(view, "action", None))
        if kind is None:
            return super().has_permission(request, view)
        if not request.user or not request.user.is_authenticated:
            return False
        model = self._queryset(view).model
        return request.user.has_perm(f"{model._meta.app_label}.{kind}_{model._meta.model_name}")
