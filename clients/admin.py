from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path

from ops.audit import AuditLogAdminMixin

from .models import Client
from .serializers import csv_too_large
from .services import ImportBatchFailed, MalformedCSV, clients_import


class ClientImportForm(forms.Form):
    file = forms.FileField(help_text="CSV with a header row: phone,operator_code,tag,timezone.")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > settings.CLIENT_IMPORT_MAX_BYTES:
            raise forms.ValidationError(csv_too_large())
        return upload


@admin.register(Client)
class ClientAdmin(AuditLogAdminMixin, admin.ModelAdmin):
    """Lists show phones masked, as logs do; the change form shows the full phone."""

    audit_name = "client"
    list_display = ["id", "masked_phone", "operator_code", "tag", "timezone", "created_at"]
    list_display_links = ["id", "masked_phone"]
    list_filter = ["operator_code", "tag", "timezone"]
    fields = ["phone", "operator_code", "tag", "timezone", "attributes", "created_at", "updated_at"]
    search_fields = ["phone", "tag", "=operator_code"]
    readonly_fields = ["created_at", "updated_at"]
    # The client table can be large: skip the second COUNT(*) over the unfiltered table.
    show_full_result_count = False

    @admin.display(description="phone", ordering="phone")
    def masked_phone(self, client: Client) -> str:
        return client.masked_phone

    def get_urls(self):
        view = self.admin_site.admin_view(self.import_view)
        return [path("import/", view, name="clients_client_import"), *super().get_urls()]

    def import_view(self, request):
        """The API's import (clients.services.clients_import) behind an upload form."""
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied
        form = ClientImportForm(request.POST or None, request.FILES or None)
        report = None
        if request.method == "POST" and form.is_valid():
            try:
                report = clients_import(data=form.cleaned_data["file"].read(), user=request.user)
            except MalformedCSV as error:
                form.add_error("file", str(error))
            except ImportBatchFailed as error:
                self.message_user(request, str(error), messages.ERROR)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form}
        context |= {"report": report, "title": "Import clients from CSV"}
        return TemplateResponse(request, "admin/clients/client/import.html", context)
