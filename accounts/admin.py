from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token, TokenProxy

from .models import masked_key, token_expires_at

# A DRF token's primary key is the key itself: any admin page of tokens (lists, links, checkboxes)
# would show it in clear. Tokens are shown on their user instead, by their first characters only,
# and revoked with an action on users. `manage.py issue_api_token` issues them and prints the key once.
admin.site.unregister(TokenProxy)
admin.site.unregister(get_user_model())
admin.site.unregister(Group)

# What a user may do. Only superusers give it (groups and permissions are granted, not earned), and
# nobody changes their own: an administrator cannot make itself superuser or take a role.
GRANTED_BY_SUPERUSERS = ["is_superuser", "groups", "user_permissions"]
ROLE_FIELDS = ["is_staff", *GRANTED_BY_SUPERUSERS]


@admin.register(get_user_model())
class UserWithTokenAdmin(UserAdmin):
    # The ignores: django-stubs types list_display per instance and fieldsets as optional, where
    # UserAdmin sets both on the class.
    list_display = [*UserAdmin.list_display, "api_token"]  # type: ignore[misc]
    list_select_related = ["auth_token__expiry"]
    readonly_fields = [*UserAdmin.readonly_fields, "api_token"]
    fieldsets = [*UserAdmin.fieldsets, ("API", {"fields": ["api_token"]})]  # type: ignore[misc]
    actions = ["revoke_api_tokens"]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.pk == request.user.pk:
            return [*readonly, *ROLE_FIELDS]
        if not request.user.is_superuser:
            return [*readonly, *GRANTED_BY_SUPERUSERS]
        return readonly

    def has_change_permission(self, request, obj=None):
        """Whoever changes an account (its password, e-mail, name) could log in as it: a non-superuser
        changes only accounts that may do no more than itself. The password form asks this too."""
        return super().has_change_permission(request, obj) and _may_manage(request.user, obj)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and _may_manage(request.user, obj)

    @admin.display(description="API token")
    def api_token(self, user) -> str:
        try:
            token = user.auth_token
        except Token.DoesNotExist:
            return "none"
        expires_at = token_expires_at(token)
        return (
            f"{masked_key(token.key)} expires {expires_at:%Y-%m-%d %H:%M}"
            if expires_at
            else masked_key(token.key)
        )

    @admin.action(description="Revoke the API tokens of the selected users", permissions=["change"])
    def revoke_api_tokens(self, request, queryset):
        managed = [user.pk for user in queryset if _may_manage(request.user, user)]
        revoked, _ = Token.objects.filter(user__in=managed).delete()
        self.message_user(request, f"Revoked {revoked} API token(s).", messages.SUCCESS)


def _may_manage(manager, user) -> bool:
    if manager.is_superuser or user is None:
        return True
    return not user.is_superuser and user.get_all_permissions() <= manager.get_all_permissions()


@admin.register(Group)
class RoleGroupAdmin(GroupAdmin):
    """A group's permissions are its members' role: only superusers change them."""

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        return readonly if request.user.is_superuser else [*readonly, "permissions"]
