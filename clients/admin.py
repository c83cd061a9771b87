from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from accounts.roles import VIEW_PHONE
from mailing_service.admin_limits import seconds_throttled
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
        view = _refusing_large_bodies(self.admin_site.admin_view(self.import_view))
        return [path("import/", view, name="clients_client_import"), *super().get_urls()]

    def import_view(self, request):
        """The API's import (clients.services.clients_import) behind an upload form."""
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied
        form = ClientImportForm(request.POST or None, request.FILES or None)
        report = None
        if request.method == "POST" and form.is_valid():
            # Counted with the API's imports, so that the admin is no way around their rate.
            if (wait := seconds_throttled(request, scope="client_import")) is not None:
                form.add_error(None, f"Too many imports: try again in {wait} s.")
            else:
                report = self._import(request, form)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form}
        context |= {"report": report, "title": "Import clients from CSV"}
        return TemplateResponse(request, "admin/clients/client/import.html", context)

    def _import(self, request, form):
        try:
            file = form.cleaned_data["file"].file
            return clients_import(file=file, user=request.user, max_rows=settings.CLIENT_IMPORT_MAX_ROWS)
        except ImportRefused as error:
            form.add_error("file", str(error))
        except ImportBatchFailed as error:
            self.message_user(request, str(error), messages.ERROR)
        return None
