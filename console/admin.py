"""The console in the admin: its front page and login page, and the mailing admin with the
pictures, figures and buttons of the console (the views behind them are console.urls')."""

from urllib.parse import urlencode

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from mailings.admin import MailingAdmin
from mailings.models import Mailing
from messages_app.models import MessageStatus
from messages_app.selectors import (
    acceptances_per_minute,
    audience_timezones,
    left_out,
    receipt_figures_by_mailing,
    top_errors,
)
from ops.logging import mask_phones

from . import charts
from .views import LIVE_STATES, offered_actions, progress, resend_offer, test_send_panel

# The admin's front page links to the dashboard; its login page offers single sign-on when OIDC is on.
admin.site.index_template = "console/index.html"
admin.site.login_template = "console/login.html"
# The admin's app sidebar takes 300 px: without it the mailing list fits a 1366 px screen.
admin.site.enable_nav_sidebar = False


class ConsoleMailingAdmin(MailingAdmin):
    """The mailing admin, with a progress bar per listed mailing and the console above a mailing's form."""

    list_display = ["id", "window", "state", "progress", "audience", "size", "send_rate"]
    change_form_template = "console/mailing_change_form.html"

    class Media:
        css = {"all": ["console/console.css"]}

    def change_view(self, request, object_id, form_url="", extra_context=None):
        mailing = self.get_object(request, object_id)
        if mailing is not None:
            extra_context = {**(extra_context or {}), **self.console_context(request, mailing)}
        return super().change_view(request, object_id, form_url, extra_context)

    def console_context(self, request: HttpRequest, mailing: Mailing) -> dict:
        """The pictures, figures and buttons above a mailing's form."""
        live = progress(mailing)
        counts = live["counts"]
        spread = audience_timezones(mailing)
        audience = sum(number for _, number in spread)
        messages_url = reverse("admin:messages_app_message_changelist")
        return {
            "progress": live,
            "actions": offered_actions(request, mailing, live["state"]),
            "resend": resend_offer(request, mailing, live["state"], counts),
            "segments": mailing.segments,
            "test_send": test_send_panel(request, mailing),
            "status_counts": [(status.label, status.value, counts[status.value]) for status in MessageStatus],
            "acceptances": charts.bar_chart(
                [
                    charts.Bucket(f"{timezone.localtime(minute):%H:%M}", {"sent": sent})
                    for minute, sent in acceptances_per_minute(mailing)
                ],
                charts.PROGRESS_SERIES[:1],
                title="Accepted per minute",
                label_every=10,
            ),
            "top_errors": [(mask_phones(error), number) for error, number in top_errors(mailing)],
            "receipts": receipt_figures_by_mailing([mailing.pk], now=timezone.now()).get(mailing.pk),
            "failed_url": messages_url
            + "?"
            + urlencode({"mailing__id__exact": mailing.pk, "status__exact": MessageStatus.FAILED}),
            "timezones": [(name, number, 100 * number / audience) for name, number in spread],
            "left_out": left_out(mailing),
            "export_url": reverse("console:mailing-export", args=[mailing.pk]),
            "poll_url": reverse("console:mailing-progress", args=[mailing.pk])
            if live["state"] in LIVE_STATES
            else "",
        }

    @admin.display(description="progress")
    def progress(self, mailing: Mailing) -> str:
        counts = mailing.message_counts
        return format_html(
            '<div class="progress-cell">{}<span>{} %</span></div>',
            charts.progress_bar(counts),
            charts.percent_done(counts),
        )


admin.site.unregister(Mailing)
admin.site.register(Mailing, ConsoleMailingAdmin)
