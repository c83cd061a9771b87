from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from ops.audit import AuditLogAdminMixin

from .models import Client
from .serializers import import_body_too_large
from .services import ImportBatchFailed, ImportRefused, clients_import


class ClientImportForm(forms.Form):
    file = forms.FileField(help_text="CSV with a header row: phone and any of operator_code, tag, timezone.")


def _refusing_large_bodies(view):
    """Refuses an import whose Content-Length is too large before anything reads the body: the
    admin's CSRF check would read a multipart body whole. The view it wraps checks CSRF itself."""

    @csrf_exempt
    def refusing(request, *args, **kwargs):
        if reason := import_body_too_large(request.META):
            return HttpResponse(reason, status=413, content_type="text/plain")
        return view(request, *args, **kwargs)

    return refusing


@admin.register(Client)
class ClientAdmin(AuditLogAdminMixin, admin.ModelAdmin):
    """Lists show phones masked, as logs do; the change form shows the full phone."""

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

    def get_urls(self):
        view = _refusing_large_bodies(self.admin_site.admin_view(self.import_view))
        return [path("import/", view, name="clients_client_import"), *super().get_urls()]

    def import_view(self, request):
        """The API's import (clients.services.clients_import) behind an upload form."""
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied
        form = ClientImportForm(request.POST or None, request.FILES or None)
        report = None
        if request.method == "POST" and form.is_valid():
            try:
                file = form.cleaned_data["file"].file
                max_rows = settings.CLIENT_IMPORT_MAX_ROWS
                report = clients_import(file=file, user=request.user, max_rows=max_rows)
            except ImportRefused as error:
                form.add_error("file", str(error))
            except ImportBatchFailed as error:
                self.message_user(request, str(error), messages.ERROR)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form}
        context |= {"report": report, "title": "Import clients from CSV"}
        return TemplateResponse(request, "admin/clients/client/import.html", context)
