from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from rest_framework.authtoken.models import Token, TokenProxy

from .models import masked_key, token_expires_at

# A DRF token's primary key is the key itself: any admin page of tokens (lists, links, checkboxes)
# would show it in clear. Tokens are shown on their user instead, by their first characters only,
# and revoked with an action on users. `manage.py issue_api_token` issues them and prints the key once.
admin.site.unregister(TokenProxy)
admin.site.unregister(get_user_model())


@admin.register(get_user_model())
class UserWithTokenAdmin(UserAdmin):
    # The ignores: django-stubs types list_display per instance and fieldsets as optional, where
    # UserAdmin sets both on the class.
    list_display = [*UserAdmin.list_display, "api_token"]  # type: ignore[misc]
    list_select_related = ["auth_token__expiry"]
    readonly_fields = [*UserAdmin.readonly_fields, "api_token"]
    fieldsets = [*UserAdmin.fieldsets, ("API", {"fields": ["api_token"]})]  # type: ignore[misc]
    actions = ["revoke_api_tokens"]

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
        revoked, _ = Token.objects.filter(user__in=queryset).delete()
        self.message_user(request, f"Revoked {revoked} API token(s).", messages.SUCCESS)
