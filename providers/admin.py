from django.contrib import admin
from django.db import models

from .models import Provider, ProviderWeightChange


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    """Admins only (accounts.roles). The token stays in the workers' environment: the row names the
    variable that holds it."""

    list_display = ["name", "transport", "url", "weight", "rate_limit", "enabled", "updated_at"]
    list_filter = ["enabled", "transport"]
    search_fields = ["name"]
    # A URL typed without a scheme is https (Django 6's default, and what a provider's API speaks).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


@admin.register(ProviderWeightChange)
class ProviderWeightChangeAdmin(admin.ModelAdmin):
    """Written by the senders only: read here."""

    list_display = ["at", "provider", "weight_from", "weight_to", "reason", "holder"]
    list_filter = ["provider"]
    date_hierarchy = "at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
