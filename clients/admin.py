from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path

from accounts.roles import VIEW_PHONE
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
    """Lists show phones masked, as logs do. The change form shows the full phone to those who may see
    it (VIEW_PHONE, as in the API) and the masked one, read-only, to the others; only they search,
    filter or sort by phone, so no answer tells them whether a phone is stored (the test send's client
    picker searches here too).
    """

    audit_name = "client"
    list_display = ["id", "masked_phone", "operator_code", "tag", "timezone", "created_at"]
    list_display_links = ["id", "masked_phone"]
    list_filter = ["operator_code", "tag", "timezone"]
    search_fields = ["phone", "tag", "=operator_code"]
    readonly_fields = ["created_at", "updated_at"]
    # The client table can be large: skip the second COUNT(*) over the unfiltered table.
    show_full_result_count = False

    @admin.display(description="phone", ordering="phone")
    def masked_phone(self, client: Client) -> str:
        return client.masked_phone

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if obj is None or request.user.has_perm(VIEW_PHONE):
            return fields
        return ["masked_phone" if name == "phone" else name for name in fields if name != "masked_phone"]

    def get_readonly_fields(self, request, obj=None):
        readonly = super().get_readonly_fields(request, obj)
        if obj is None or request.user.has_perm(VIEW_PHONE):
            return readonly
        return [*readonly, "masked_phone"]

    def get_search_fields(self, request):
        if request.user.has_perm(VIEW_PHONE):
            return self.search_fields
        return [name for name in self.search_fields if name.lstrip("=^@") != "phone"]

    def get_sortable_by(self, request):
        if request.user.has_perm(VIEW_PHONE):
            return super().get_sortable_by(request)
        return [name for name in self.get_list_display(request) if name != "masked_phone"]

    def lookup_allowed(self, lookup, value, request):
        # The admin allows any lookup on the model's own fields in the query string (?phone__startswith=).
        if lookup.split("__")[0] == "phone" and not request.user.has_perm(VIEW_PHONE):
            return False
        return super().lookup_allowed(lookup, value, request)

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
