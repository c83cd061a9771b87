from django import forms
from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from accounts.roles import EXEMPT_FROM_CAP
from messages_app.selectors import PROGRESS_RATE_WINDOW, SENT_SINCE, attach_message_counts
from messages_app.services import mailing_delete
from ops.audit import AuditLogAdminMixin

from .models import AnyHourWithWindow, Mailing, MailingState, TestSend, window_to_save
from .placeholders import TemplateError, parse
from .services import (
    EDITABLE_FIELDS,
    FROZEN_AFTER_LAUNCH,
    MailingEndTooSoonError,
    mailing_end_check,
    mailing_update,
)

AUDIENCE_FIELDS = ["filter_operator_code", "filter_operator_codes", "filter_tag", "filter_tags"]

# Read-only in forms: the pipeline and the operators' actions (pause, cancel) write these.
PIPELINE_FIELDS = [
    "launched_at",
    "fanout_cursor",
    "fanout_lease_until",
    "fanout_completed_at",
    "audience_size",
    "audience_opted_out",
    "paused_at",
    "cancelled_at",
]


class MailingChangeList(ChangeList):
    """Counts the messages of the page's mailings only, once it is paginated: one grouped query sums
    their tallies by status, one counts those sent in the last PROGRESS_RATE_WINDOW (one more with a window).

    result_list stays the admin's queryset; attach_message_counts evaluates it, so its result cache
    holds the mailings with their `message_counts` when the template iterates it.
    """

    def get_results(self, request):
        super().get_results(request)
        mailings = attach_message_counts(self.result_list, sent_since=timezone.now() - PROGRESS_RATE_WINDOW)
        for mailing in mailings:
            # What Mailing.state_at asks of the messages, known from the counts without a query.
            mailing.has_unsent = mailing.message_counts["pending"] + mailing.message_counts["sending"] > 0


class StateListFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return MailingState.choices

    def queryset(self, request, queryset):
        if self.value() in MailingState.values:
            return queryset.in_state(self.value(), timezone.now())
        return queryset


class CommaSeparatedField(forms.CharField):
    """A list of values typed as "a, b, c"; the model field's validators check each value."""

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        return [item.strip() for item in (value or "").split(",") if item.strip()]


class MailingForm(forms.ModelForm):
    filter_operator_codes = CommaSeparatedField(
        required=False, help_text="Any of these operator codes, comma-separated (and filter operator code)."
    )
    filter_tags = CommaSeparatedField(
        required=False, help_text="Any of these tags, comma-separated (and filter tag)."
    )

    send_at_any_hour = forms.BooleanField(
        required=False,
        help_text="No local window: messages go out at any hour. Unticked with no window given: the "
        "deployment's default window (DEFAULT_LOCAL_WINDOW).",
    )

    class Meta:
        model = Mailing
        fields = [
            "start_at",
            "end_at",
            "text",
            *AUDIENCE_FIELDS,
            "cap_exempt",
            "local_window_start",
            "local_window_end",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None and "send_at_any_hour" in self.fields:  # not once launched
            self.fields["send_at_any_hour"].initial = self.instance.send_at_any_hour

    def clean(self):
        """The window it is saved with, by the API's rule (models.window_to_save)."""
        cleaned = super().clean()
        if "local_window_start" not in self.fields:  # launched: the window is frozen
            return cleaned
        any_hour = cleaned.get("send_at_any_hour", False)
        start, end = cleaned.get("local_window_start"), cleaned.get("local_window_end")
        try:
            start, end, _ = window_to_save(start, end, any_hour=any_hour, wants_default=not any_hour)
        except AnyHourWithWindow as error:
            self.add_error("send_at_any_hour", str(error))
            return cleaned
        cleaned["local_window_start"], cleaned["local_window_end"] = start, end
        return cleaned

    def clean_end_at(self):
        end_at = self.cleaned_data["end_at"]
        if self.instance.pk is not None and end_at is not None:
            try:
                mailing_end_check(mailing=self.instance, end_at=end_at, now=timezone.now())
            except MailingEndTooSoonError as exc:
                raise forms.ValidationError(str(exc)) from exc
        return end_at

    def clean_text(self) -> str:
        text = self.cleaned_data["text"]
        # A text saved before templates stays verbatim until edited; edited, it becomes one
        # (mailing_update), so it is checked as one.
        if self.instance.text_is_template or text != self.instance.text:
            try:
                parse(text)
            except TemplateError as error:
                raise forms.ValidationError(error.errors) from error
        return text


class MailingAddForm(MailingForm):
    save_as_draft = forms.BooleanField(
        required=False,
        help_text="Never sent until launched with the Launch button; edit and test-send it meanwhile.",
    )


class LaunchedListFilter(admin.SimpleListFilter):
    title = "launched"
    parameter_name = "launched"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(launched_at__isnull=self.value() == "no")
        return queryset


@admin.register(Mailing)
class MailingAdmin(AuditLogAdminMixin, admin.ModelAdmin):
    """Mailings with their delivery counts; messages are reached through a filtered link, not an inline.

    Edits go through mailing_update, as the API's do: what the messages were made from is frozen once
    the mailing is launched, and a save never writes the launcher's bookkeeping columns.

    The console (console.admin) registers it again with the pictures and buttons of its pages.

    Deletion follows the API's rule (messages_app.services.mailing_delete): never launched, or finished
    or cancelled; the confirmation page counts the messages that go with it (confirming is asking
    for the history to go) instead of listing them, as there may be millions.
    """

    audit_name = "mailing"
    deletions_audited_in_services = True  # delete_model: mailing_delete

    list_display = ["id", "window", "state", "audience", "size", "send_rate"]
    list_display_links = ["id", "window"]
    form = MailingForm
    # start_at's filter is the period one: today, the past 7 days, this month, this year.
    list_filter = [StateListFilter, "start_at", LaunchedListFilter]
    search_fields = ["text", "filter_tag"]
    readonly_fields = ["messages_link", "created_at", "updated_at", *PIPELINE_FIELDS]
    fieldsets = [
        (None, {"fields": ["start_at", "end_at", "text"]}),
        ("Audience", {"fields": [*AUDIENCE_FIELDS, "cap_exempt"]}),
        (
            "Local-time window",
            {
                "fields": ["local_window_start", "local_window_end", "send_at_any_hour"],
                "description": "Each client gets the message only between these times of day in "
                "their own timezone; both or neither.",
            },
        ),
        (
            "Internal bookkeeping",
            {
                "classes": ["collapse"],
                "fields": ["messages_link", *PIPELINE_FIELDS, "created_at", "updated_at"],
            },
        ),
    ]

    def get_changelist(self, request: HttpRequest, **kwargs):
        return MailingChangeList

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = MailingAddForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.is_launched:
            readonly += sorted(FROZEN_AFTER_LAUNCH)
            readonly.append("send_at_any_hour")
        if not request.user.has_perm(f"mailings.{EXEMPT_FROM_CAP}") and "cap_exempt" not in readonly:
            readonly.append("cap_exempt")
        return readonly

    def save_model(self, request, obj, form, change):
        if not change:
            obj.draft = form.cleaned_data["save_as_draft"]
            super().save_model(request, obj, form, change)
            return
        editable = {name: value for name, value in form.cleaned_data.items() if name in EDITABLE_FIELDS}
        mailing_update(mailing=obj, data=editable)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            # Nothing has been delivered yet for a mailing being added.
            (name, first), *rest = self.fieldsets[:3]
            return [(name, {**first, "fields": [*first["fields"], "save_as_draft"]}), *rest]
        return self.fieldsets

    def get_actions(self, request):
        actions = super().get_actions(request)
        # The bulk action cannot tell launched mailings apart before building its huge confirmation page.
        actions.pop("delete_selected", None)
        return actions

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (
            obj is None or obj.may_be_deleted(timezone.now())
        )

    def get_deleted_objects(self, objs, request):
        mailings = list(objs)
        summary = [str(mailing) for mailing in mailings]
        counts = attach_message_counts(mailings)
        messages = sum(mailing.message_counts["total"] for mailing in counts)
        return summary, {"mailings": len(mailings), "messages": messages}, set(), []

    def delete_model(self, request, obj):
        mailing_delete(mailing=obj, user=request.user, with_history=True)

    @admin.display(description="window", ordering="start_at")
    def window(self, mailing: Mailing) -> str:
        start, end = timezone.localtime(mailing.start_at), timezone.localtime(mailing.end_at)
        end_format = "%H:%M" if start.date() == end.date() else "%b %d %H:%M"
        return f"{start:%b %d %H:%M} – {end.strftime(end_format)}"

    @admin.display(description="state")
    def state(self, mailing: Mailing) -> str:
        state = mailing.state_at(timezone.now())
        return format_html('<span class="state state-{}">{}</span>', state, state.label)

    @admin.display(description="audience")
    def audience(self, mailing: Mailing) -> str:
        return mailing.audience_description

    @admin.display(description="size")
    def size(self, mailing: Mailing) -> str:
        """The messages the fan-out made (so far); unknown before the launch fixes the audience."""
        return mailing.message_counts["total"] if mailing.is_launched else "–"

    @admin.display(description="sent/min")
    def send_rate(self, mailing: Mailing) -> int:
        return mailing.message_counts[SENT_SINCE]

    @admin.display(description="messages")
    def messages_link(self, mailing: Mailing) -> str:
        url = reverse("admin:messages_app_message_changelist")
        return format_html('<a href="{}?mailing__id__exact={}">Messages</a>', url, mailing.pk)


@admin.register(TestSend)
class TestSendAdmin(admin.ModelAdmin):
    """The audit trail of test sends: who tried which mailing's text on whom, and what came of it.
    Read-only: test sends are made through the API (POST /api/v1/mailings/{id}/test/)."""

    list_display = [
        "id",
        "mailing",
        "client",
        "requested_by",
        "status",
        "detail",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status"]
    list_select_related = ["mailing", "client", "requested_by"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
