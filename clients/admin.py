from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from ops.audit import AuditLogAdminMixin

from .models import Client, OptOut
from .serializers import csv_too_large
from .services import (
    ImportBatchFailed,
    MalformedCSV,
    OptOutMissing,
    clients_import,
    optout_add,
    optout_remove,
)


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


class ReconsentForm(forms.Form):
    reason = forms.CharField(max_length=255, help_text="Why the phone may receive mailings again.")


@admin.register(OptOut)
class OptOutAdmin(admin.ModelAdmin):
    """Phones that receive nothing. Adding one here is source `admin` (optout_add ends its pending
    messages); removing one is a re-consent with a reason, on a page of its own, never a plain delete."""

    list_display = ["id", "masked_phone", "source", "reason", "created_at", "created_by"]
    list_display_links = ["id", "masked_phone"]
    list_filter = ["source", "created_at"]
    search_fields = ["=phone", "reason"]
    fields = ["phone", "reason", "source", "created_at", "created_by", "reconsent_link"]
    readonly_fields = ["source", "created_at", "created_by", "reconsent_link"]
    show_full_result_count = False

    @admin.display(description="phone", ordering="phone")
    def masked_phone(self, optout: OptOut) -> str:
        return optout.masked_phone

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
