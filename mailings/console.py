"""The operator console beside the mailing admin: the dashboard, a mailing's live progress, and the
buttons of a mailing's page (pause, resume, cancel, resend, test send).

Views read through selectors, draw with `charts` and act only through mailings.services; they are
mounted behind the admin's login (`admin.site.admin_view`). Looking needs the permission to view
mailings; acting, to change them (resend: to add one).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.widgets import AutocompleteSelectMultiple
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from clients.models import Client
from messages_app.models import MessageStatus
from messages_app.selectors import outcome_totals, outcomes_per_hour
from messages_app.services import provider_paused_until
from ops.selectors import ATTEMPT_OUTCOMES, PROVIDER_ERROR_OUTCOMES, provider_attempts, provider_pauses

from . import charts
from .models import Mailing, MailingState, TestSend
from .selectors import PROGRESS_RATE_WINDOW, attach_message_counts, mailing_progress
from .services import (
    MailingNothingToResendError,
    MailingStateError,
    mailing_cancel,
    mailing_pause,
    mailing_resend,
    mailing_resume,
    mailing_test_send,
)

OUTCOME_SERIES = [series for series in charts.PROGRESS_SERIES if series.key != "waiting"]
# Mailings the dashboard lists in each state (running, paused, scheduled).
DASHBOARD_MAILINGS = 10


@dataclass(frozen=True)
class Action:
    """A button on a mailing's page: the service it calls, and the states it is offered in.

    The service decides (and refuses with MailingStateError); the states only spare the operator
    buttons that would be refused.
    """

    label: str
    service: Callable
    offered_in: tuple[MailingState, ...]
    confirm: str = ""


ACTIONS = {
    "pause": Action("Pause", mailing_pause, (MailingState.SCHEDULED, MailingState.RUNNING)),
    "resume": Action("Resume", mailing_resume, (MailingState.PAUSED,)),
    "cancel": Action(
        "Cancel",
        mailing_cancel,
        (MailingState.SCHEDULED, MailingState.RUNNING, MailingState.PAUSED),
        confirm="Cancel this mailing for good? Its unsent messages expire.",
    ),
}
# States in which a mailing's page keeps polling its progress.
LIVE_STATES = (MailingState.SCHEDULED, MailingState.RUNNING, MailingState.PAUSED)


def _require_view_permission(request: HttpRequest) -> None:
    if not request.user.has_perm("mailings.view_mailing"):
        raise PermissionDenied


def offered_actions(request: HttpRequest, mailing: Mailing, state: MailingState) -> list[dict]:
    """The buttons this user may press on this mailing now."""
    if not request.user.has_perm("mailings.change_mailing"):
        return []
    return [
        {"name": name, "label": action.label, "confirm": action.confirm, "url": _action_url(mailing, name)}
        for name, action in ACTIONS.items()
        if state in action.offered_in
    ]


def _action_url(mailing: Mailing, name: str) -> str:
    return reverse("admin:mailings_mailing_action", args=[mailing.pk, name])


@require_POST
def mailing_action_view(request: HttpRequest, mailing_id: int, action: str) -> HttpResponse:
    """Runs one of ACTIONS through its service, then goes back to the mailing's page with a message."""
    if action not in ACTIONS:
        raise Http404(f"No action {action!r}")
    if not request.user.has_perm("mailings.change_mailing"):
        raise PermissionDenied
    mailing = get_object_or_404(Mailing, pk=mailing_id)
    try:
        ACTIONS[action].service(mailing=mailing, user=request.user)
    except MailingStateError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"{mailing}: {action} done.")
    return HttpResponseRedirect(reverse("admin:mailings_mailing_change", args=[mailing.pk]))


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


RESENDABLE_STATES = (MailingState.FINISHED, MailingState.CANCELLED)


@require_POST
def mailing_resend_view(request: HttpRequest, mailing_id: int) -> HttpResponse:
    """Resends to the failed and expired clients through mailing_resend; opens the new mailing."""
    if not request.user.has_perm("mailings.add_mailing"):
        raise PermissionDenied
    mailing = get_object_or_404(Mailing, pk=mailing_id)
    back = HttpResponseRedirect(reverse("admin:mailings_mailing_change", args=[mailing.pk]))
    form = ResendForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(f"{field}: {' '.join(problems)}" for field, problems in form.errors.items())
        messages.error(request, f"Resend not started: {errors}")
        return back
    try:
        resend = mailing_resend(mailing=mailing, user=request.user, **form.cleaned_data)
    except (MailingStateError, MailingNothingToResendError) as error:
        messages.error(request, str(error))
        return back
    messages.success(request, f"{resend} resends the failed and expired messages of {mailing}.")
    return HttpResponseRedirect(reverse("admin:mailings_mailing_change", args=[resend.pk]))


def resend_offer(request: HttpRequest, mailing: Mailing, state: MailingState, counts: dict[str, int]) -> dict:
    """The resend form's action and window when this user may resend this mailing now, else {}."""
    unsent = counts[MessageStatus.FAILED] + counts[MessageStatus.EXPIRED]
    if not unsent or state not in RESENDABLE_STATES or not request.user.has_perm("mailings.add_mailing"):
        return {}
    return {
        "url": reverse("admin:mailings_mailing_resend", args=[mailing.pk]),
        "messages": unsent,
        **ResendForm.initial_window(),
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


# Test sends listed on a mailing's page, newest first.
RECENT_TEST_SENDS = 5


def test_send_panel(request: HttpRequest, mailing: Mailing) -> dict:
    """The test-send form (for those who may change mailings) and the mailing's latest test sends."""
    may_send = request.user.has_perm("mailings.change_mailing")
    return {
        "form": TestSendForm() if may_send else None,
        "url": reverse("admin:mailings_mailing_test_send", args=[mailing.pk]),
        "recent": list(mailing.test_sends.select_related("client")[:RECENT_TEST_SENDS]),
    }


@require_POST
def mailing_test_send_view(request: HttpRequest, mailing_id: int) -> HttpResponse:
    """Sends the mailing's text now to the picked clients through mailing_test_send."""
    if not request.user.has_perm("mailings.change_mailing"):
        raise PermissionDenied
    mailing = get_object_or_404(Mailing, pk=mailing_id)
    form = TestSendForm(request.POST)
    if form.is_valid():
        client_ids = [client.pk for client in form.cleaned_data["clients"]]
        mailing_test_send(mailing=mailing, user=request.user, client_ids=client_ids)
        messages.success(request, f"Test send to {len(client_ids)} client(s) queued; outcomes below.")
    else:
        messages.error(request, f"Test send not started: {' '.join(form.errors['clients'])}")
    return HttpResponseRedirect(reverse("admin:mailings_mailing_change", args=[mailing.pk]))


def progress(mailing: Mailing) -> dict:
    """What a mailing's page shows of its progress, also sent as JSON while it runs: two queries."""
    now = timezone.now()
    counts = attach_message_counts([mailing], sent_since=now - PROGRESS_RATE_WINDOW)[0].message_counts
    mailing.has_unsent = counts["pending"] + counts["sending"] > 0
    pace = mailing_progress(mailing, now=now)
    finish = pace["estimated_finish_at"]
    return {
        "id": mailing.pk,
        "state": mailing.state_at(now),
        "counts": counts,
        "percent": charts.percent_done(counts),
        "send_rate_per_second": pace["rate_per_second"],
        "estimated_finish": timezone.localtime(finish).strftime("%H:%M:%S") if finish else "",
        "bar": str(charts.progress_bar(counts, height=28)),
    }


def mailing_progress_view(request: HttpRequest, mailing_id: int) -> JsonResponse:
    _require_view_permission(request)
    return JsonResponse(progress(get_object_or_404(Mailing, pk=mailing_id)))


HEALTH_PERIOD = timedelta(hours=1)


def provider_health(*, now: datetime) -> dict:
    """The provider over the last HEALTH_PERIOD, from what ops records: attempts by outcome (kept per
    hour, so the counts start at the top of the hour before), pauses (breaker or refused token)
    that began in the period, and the pause in force now. Latency is only in Prometheus
    (sms_provider_request_duration_seconds at /metrics), not here."""
    since = (now - HEALTH_PERIOD).replace(minute=0, second=0, microsecond=0)
    attempts = provider_attempts(since=since, until=now)
    reached = sum(attempts.get(outcome, 0) for outcome in ATTEMPT_OUTCOMES)
    errors = sum(attempts.get(outcome, 0) for outcome in PROVIDER_ERROR_OUTCOMES)
    pauses = provider_pauses(since=now - HEALTH_PERIOD, until=now)
    return {
        "counted_since": since,
        "attempts": [(outcome, attempts.get(outcome, 0)) for outcome in ATTEMPT_OUTCOMES],
        "error_percent": 100 * errors / reached if reached else None,
        "pauses": len(pauses),
        "paused_seconds": sum(span.seconds for span in pauses),
        "paused_until": provider_paused_until(now=now),
    }


def dashboard_view(request: HttpRequest) -> HttpResponse:
    _require_view_permission(request)
    now = timezone.now()
    midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    # Running first (ending soonest on top), then paused, then scheduled (starting soonest).
    live = [
        (
            state,
            attach_message_counts(Mailing.objects.in_state(state, now).order_by(order)[:DASHBOARD_MAILINGS]),
        )
        for state, order in [
            (MailingState.RUNNING, "end_at"),
            (MailingState.PAUSED, "end_at"),
            (MailingState.SCHEDULED, "start_at"),
        ]
    ]
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "now": now,
        "totals": [
            (period, [(series, figures.get(series.key, 0)) for series in OUTCOME_SERIES])
            for period, figures in [
                ("Today", outcome_totals(since=midnight)),
                ("Last 7 days", outcome_totals(since=now - timedelta(days=7))),
            ]
        ],
        "per_hour": charts.bar_chart(
            outcomes_per_hour(now=now), OUTCOME_SERIES, title="Messages per hour, last 24 hours"
        ),
        "mailings": [
            (
                mailing,
                state,
                charts.progress_bar(mailing.message_counts),
                charts.percent_done(mailing.message_counts),
            )
            for state, mailings in live
            for mailing in mailings
        ],
        "health": provider_health(now=now),
        "changelist_url": reverse("admin:mailings_mailing_changelist"),
    }
    return TemplateResponse(request, "admin/mailings/dashboard.html", context)
