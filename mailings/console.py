"""The operator console's pages beside the mailing admin: the dashboard and a mailing's live progress.

Each view reads through selectors and draws with `charts`; they are mounted behind the admin's
login (`admin.site.admin_view`) and ask for the permission to view mailings.
"""

from datetime import timedelta

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from messages_app.selectors import outcome_totals, outcomes_per_hour, provider_health

from . import charts
from .models import Mailing
from .selectors import attach_message_counts, message_counts_by_mailing, recent_send_rates

OUTCOME_SERIES = [series for series in charts.PROGRESS_SERIES if series.key != "waiting"]
# Mailings listed per section of the dashboard.
DASHBOARD_MAILINGS = 10


def _require_view_permission(request: HttpRequest) -> None:
    if not request.user.has_perm("mailings.view_mailing"):
        raise PermissionDenied


def progress(mailing: Mailing, counts: dict[str, int], send_rate: int) -> dict:
    """What a mailing's page shows of its progress, also sent as JSON while it runs."""
    return {
        "id": mailing.pk,
        "counts": counts,
        "percent": charts.percent_done(counts),
        "send_rate_per_minute": send_rate,
        "bar": str(charts.progress_bar(counts, height=28)),
    }


def mailing_progress_view(request: HttpRequest, mailing_id: int) -> JsonResponse:
    _require_view_permission(request)
    mailing = get_object_or_404(Mailing, pk=mailing_id)
    counts = message_counts_by_mailing([mailing.pk])[mailing.pk]
    rate = recent_send_rates([mailing.pk], now=timezone.now()).get(mailing.pk, 0)
    return JsonResponse(progress(mailing, counts, rate))


def dashboard_view(request: HttpRequest) -> HttpResponse:
    _require_view_permission(request)
    now = timezone.now()
    midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    running = Mailing.objects.filter(start_at__lte=now, end_at__gt=now).order_by("end_at")
    scheduled = Mailing.objects.filter(start_at__gt=now).order_by("start_at")
    sections = [
        ("Running", attach_message_counts(running[:DASHBOARD_MAILINGS])),
        ("Scheduled", attach_message_counts(scheduled[:DASHBOARD_MAILINGS])),
    ]
    health = provider_health(now=now)
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "now": now,
        "totals": [
            (period, [(series, figures[series.key]) for series in OUTCOME_SERIES])
            for period, figures in [
                ("Today", outcome_totals(since=midnight)),
                ("Last 7 days", outcome_totals(since=now - timedelta(days=7))),
            ]
        ],
        "per_hour": charts.bar_chart(
            outcomes_per_hour(now=now), OUTCOME_SERIES, title="Messages per hour, last 24 hours"
        ),
        "sections": [
            (name, [(mailing, charts.progress_bar(mailing.message_counts)) for mailing in mailings])
            for name, mailings in sections
        ],
        "health": health,
        "health_period_minutes": 60,
        "changelist_url": reverse("admin:mailings_mailing_changelist"),
    }
    return TemplateResponse(request, "admin/mailings/dashboard.html", context)
