from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.csrf import csrf_exempt

from accounts.roles import VIEW_PHONE
from mailing_service.admin_limits import seconds_throttled
from ops.audit import AuditLogAdminMixin

from .models import Client, OptOut
from .serializers import import_body_too_large
from .services import (
    ImportBatchFailed,
    ImportRefused,
    OptOutMissing,
    clients_import,
    optout_add,
    optout_remove,
)


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


class PhoneMaskedAdmin(admin.ModelAdmin):
    """Lists show phones masked, as logs do. The change form shows the full phone to those who may see
    it (VIEW_PHONE, as in the API) and the masked one, read-only, to the others; only they search,
    filter or sort by phone, so no answer tells them whether a phone is stored.
    """

    @admin.display(description="phone", ordering="phone")
    def masked_phone(self, row) -> str:
        return row.masked_phone

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


@admin.register(Client)
class ClientAdmin(AuditLogAdminMixin, PhoneMaskedAdmin):
    """Clients, their phones masked for those without VIEW_PHONE (the test send's client picker
    searches here too)."""

    audit_name = "client"
    list_display = ["id", "masked_phone", "operator_code", "tag", "timezone", "created_at"]
    list_display_links = ["id", "masked_phone"]
    list_filter = ["operator_code", "tag", "timezone"]
    fields = ["phone", "operator_code", "tag", "timezone", "attributes", "created_at", "updated_at"]
    search_fields = ["phone", "tag", "=operator_code"]
    readonly_fields = ["created_at", "updated_at"]
    # The client table can be large: skip the second COUNT(*) over the unfiltered table.
    show_full_result_count = False

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


class ReconsentForm(forms.Form):
    reason = forms.CharField(max_length=255, help_text="Why the phone may receive mailings again.")


@admin.register(OptOut)
class OptOutAdmin(PhoneMaskedAdmin):
    """Phones that receive nothing. Adding one here is source `admin` (optout_add ends its pending
    messages); removing one is a re-consent with a reason, on a page of its own, never a plain delete."""

    list_display = ["id", "masked_phone", "source", "reason", "created_at", "created_by"]
    list_display_links = ["id", "masked_phone"]
    list_filter = ["source", "created_at"]
    search_fields = ["=phone", "reason"]
    fields = ["phone", "reason", "source", "created_at", "created_by", "reconsent_link"]
    readonly_fields = ["source", "created_at", "created_by", "reconsent_link"]
    show_full_result_count = False

    @admin.display(description="re-consent")
    def reconsent_link(self, optout: OptOut) -> str:
        if optout.pk is None:
            return "-"
        return format_html(
            '<a href="{}">Take this phone off the list…</a>',
            reverse("admin:clients_optout_reconsent", args=[optout.pk]),
        )

    def has_change_permission(self, request, obj=None):
        return False  # an opt-out is added or removed, never edited

    def has_delete_permission(self, request, obj=None):
        return False  # removal needs a reason: reconsent_view

    def save_model(self, request, obj, form, change):
        optout, _ = optout_add(
            phone=obj.phone, reason=obj.reason, source=OptOut.Source.ADMIN, user=request.user
        )
        obj.pk = optout.pk

    def log_addition(self, request, obj, message):
        return None  # optout_add logs it, masked

    def get_urls(self):
        view = self.admin_site.admin_view(self.reconsent_view)
        return [path("<int:pk>/reconsent/", view, name="clients_optout_reconsent"), *super().get_urls()]

    def reconsent_view(self, request, pk: int):
        if not request.user.has_perm("clients.delete_optout"):
            raise PermissionDenied
        optout = get_object_or_404(OptOut, pk=pk)
        form = ReconsentForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                optout_remove(phone=optout.phone, reason=form.cleaned_data["reason"], user=request.user)
            except OptOutMissing as error:
                self.message_user(request, str(error), messages.WARNING)
            else:
                self.message_user(request, f"{optout.masked_phone} may receive mailings again.")
            return redirect("admin:clients_optout_changelist")
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form}
        context |= {"optout": optout, "title": "Re-consent"}
        return TemplateResponse(request, "admin/clients/optout/reconsent.html", context)
