"""The operator console beside the mailing admin: the dashboard, a mailing's live progress, and the
buttons of a mailing's page (launch a draft, pause, resume, cancel, resend, test send, export).

Views read through selectors, draw with `charts` and act only through the apps' services; they are
mounted behind the admin's login (console.urls). Looking needs the permission to view mailings;
acting, to change them (resend: to add one).
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from mailing_service.admin_limits import seconds_throttled
from mailings.models import Mailing, MailingState
from mailings.services import (
    MailingNothingToResendError,
    MailingStateError,
    MailingWindowPassedError,
    mailing_launch_draft,
    mailing_pause,
    mailing_resend,
    mailing_resume,
    mailing_test_send,
)
from messages_app.models import MessageStatus
from messages_app.selectors import (
    PROGRESS_RATE_WINDOW,
    attach_message_counts,
    mailing_progress,
    outcome_totals,
    outcomes_per_hour,
    receipt_figures_by_provider,
)
from messages_app.services import mailing_cancel
from messages_app.views import mailing_messages_csv

from . import charts
from .forms import ResendForm, TestSendForm
from .selectors import provider_health, providers_overview

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
    "launch": Action(
        "Launch",
        mailing_launch_draft,
        (MailingState.DRAFT,),
        confirm="Launch this draft? It sends at once if its window has begun.",
    ),
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


def _over_the_limits(request: HttpRequest, *, scope: str | None = None) -> bool:
    """Whether the API's rate limits refuse this action (scope: its own rate, as in the API); if so,
    says when to try again."""
    wait = seconds_throttled(request, scope=scope)
    if wait is not None:
        messages.error(request, f"Too many requests: try again in {wait} s.")
    return wait is not None


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
    return reverse("console:mailing-action", args=[mailing.pk, name])


@require_POST
def mailing_action_view(request: HttpRequest, mailing_id: int, action: str) -> HttpResponse:
    """Runs one of ACTIONS through its service, then goes back to the mailing's page with a message."""
    if action not in ACTIONS:
        raise Http404(f"No action {action!r}")
    if not request.user.has_perm("mailings.change_mailing"):
        raise PermissionDenied
    mailing = get_object_or_404(Mailing, pk=mailing_id)
    back = HttpResponseRedirect(reverse("admin:mailings_mailing_change", args=[mailing.pk]))
    if _over_the_limits(request):
        return back
    try:
        ACTIONS[action].service(mailing=mailing, user=request.user)
    except (MailingStateError, MailingWindowPassedError) as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"{mailing}: {action} done.")
    return back


RESENDABLE_STATES = (MailingState.FINISHED, MailingState.CANCELLED)


@require_POST
def mailing_resend_view(request: HttpRequest, mailing_id: int) -> HttpResponse:
    """Resends to the failed and expired clients through mailing_resend; opens the new mailing."""
    if not request.user.has_perm("mailings.add_mailing"):
        raise PermissionDenied
    mailing = get_object_or_404(Mailing, pk=mailing_id)
    back = HttpResponseRedirect(reverse("admin:mailings_mailing_change", args=[mailing.pk]))
    if _over_the_limits(request):
        return back
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
        "url": reverse("console:mailing-resend", args=[mailing.pk]),
        "messages": unsent,
        **ResendForm.initial_window(),
    }


# Test sends listed on a mailing's page, newest first.
RECENT_TEST_SENDS = 5


def test_send_panel(request: HttpRequest, mailing: Mailing) -> dict:
    """The test-send form (for those who may change mailings) and the mailing's latest test sends."""
    may_send = request.user.has_perm("mailings.change_mailing")
    return {
        "form": TestSendForm() if may_send else None,
        "url": reverse("console:mailing-test-send", args=[mailing.pk]),
        "recent": list(mailing.test_sends.select_related("client")[:RECENT_TEST_SENDS]),
    }


@require_POST
def mailing_test_send_view(request: HttpRequest, mailing_id: int) -> HttpResponse:
    """Queues the mailing's text for the picked clients through mailing_test_send, within the API's
    limits for test sends; the outcomes appear on the mailing's page as the worker records them."""
    if not request.user.has_perm("mailings.change_mailing"):
        raise PermissionDenied
    mailing = get_object_or_404(Mailing, pk=mailing_id)
    back = HttpResponseRedirect(reverse("admin:mailings_mailing_change", args=[mailing.pk]))
    form = TestSendForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Test send not started: {' '.join(form.errors['clients'])}")
    elif not _over_the_limits(request, scope="test_send"):
        client_ids = [client.pk for client in form.cleaned_data["clients"]]
        sends = mailing_test_send(mailing=mailing, user=request.user, client_ids=client_ids)
        ids = ", ".join(str(send.pk) for send in sends)
        messages.success(request, f"Test sends {ids} queued; their outcomes appear below.")
    return back


def progress(mailing: Mailing) -> dict:
    """What a mailing's page shows of its progress, also sent as JSON while it runs: two queries, one
    or two more for a mailing with a local window (messages_app.selectors.mailing_progress)."""
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


def mailing_export_view(request: HttpRequest, mailing_id: int) -> StreamingHttpResponse:
    """The mailing's messages as CSV, as the API's export gives them (phones masked for viewers)."""
    _require_view_permission(request)
    mailing = get_object_or_404(Mailing, pk=mailing_id)
    return mailing_messages_csv(mailing_id=mailing.pk, user=request.user)


def mailing_progress_view(request: HttpRequest, mailing_id: int) -> JsonResponse:
    _require_view_permission(request)
    return JsonResponse(progress(get_object_or_404(Mailing, pk=mailing_id)))


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
            [charts.Bucket(f"{hour:%H}:00", numbers) for hour, numbers in outcomes_per_hour(now=now)],
            OUTCOME_SERIES,
            title="Messages per hour, last 24 hours",
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
        "providers": providers_overview(now=now),
        "receipts": receipt_figures_by_provider(since=now - timedelta(hours=24), now=now),
        "changelist_url": reverse("admin:mailings_mailing_changelist"),
    }
    return TemplateResponse(request, "console/dashboard.html", context)
