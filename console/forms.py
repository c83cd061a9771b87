"""The console's forms: a resend's window, a test send's clients."""

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.widgets import AutocompleteSelectMultiple
from django.utils import timezone

from clients.models import Client
from mailings.models import TestSend


class ResendForm(forms.Form):
    """The window of the new mailing a resend creates; the browser's datetime-local inputs."""

    start_at = forms.DateTimeField(input_formats=["%Y-%m-%dT%H:%M"])
    end_at = forms.DateTimeField(input_formats=["%Y-%m-%dT%H:%M"])

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("start_at") and cleaned.get("end_at") and cleaned["end_at"] <= cleaned["start_at"]:
            self.add_error("end_at", "The end must come after the start.")
        return cleaned

    @classmethod
    def initial_window(cls) -> dict[str, str]:
        start = timezone.localtime().replace(second=0, microsecond=0)
        return {
            "start_at": f"{start:%Y-%m-%dT%H:%M}",
            "end_at": f"{start + timedelta(hours=1):%Y-%m-%dT%H:%M}",
        }


class TestSendForm(forms.Form):
    """The client picker of a test send: the admin's own autocomplete over clients (by phone or tag)."""

    clients = forms.ModelMultipleChoiceField(
        queryset=Client.objects.all(),
        widget=AutocompleteSelectMultiple(TestSend._meta.get_field("client"), admin.site),
        help_text="Search by phone or tag.",
    )

    def clean_clients(self):
        clients = self.cleaned_data["clients"]
        if len(clients) > settings.TEST_SEND_MAX_CLIENTS:
            raise forms.ValidationError(f"At most {settings.TEST_SEND_MAX_CLIENTS} clients per test send.")
        return clients
