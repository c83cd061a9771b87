from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from messages_app.models import MessageStatus
from ops.audit import AuditLogAdminMixin

from .models import Mailing
from .selectors import MESSAGE_COUNT_KEYS, attach_message_counts
from .services import EDITABLE_FIELDS, FROZEN_AFTER_LAUNCH, mailing_update

# Read-only columns and form fields: the launcher and the dispatchers write these, never a person.
PIPELINE_FIELDS = [
    "launched_at",
    "fanout_cursor",
    "fanout_lease_until",
    "fanout_completed_at",
]


# The changelist's count columns, one per message status plus the total, in this order.
COUNT_COLUMNS = {key: f"messages_{key}" for key in MESSAGE_COUNT_KEYS}


def _count_column(key: str):
    """A changelist column showing the page's count of messages with this status (or "total").

    Not sortable: the counts are taken after the changelist paginates (MailingChangeList), so the
    database has nothing to order the mailings by.
    """

    @admin.display(description=key)
    def column(self, mailing: Mailing) -> int:
        return mailing.message_counts[key]

    column.__name__ = COUNT_COLUMNS[key]
    return column


class MailingChangeList(ChangeList):
    """Counts the messages of the page's mailings only, in one grouped query, once it is paginated.

    result_list stays the admin's queryset; attach_message_counts evaluates it, so its result cache
    holds the mailings with their `message_counts` when the template iterates it.
    """

    def get_results(self, request):
        super().get_results(request)
        attach_message_counts(self.result_list)


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

    A mailing can be deleted here only before it is launched: afterwards it has messages (possibly
    millions), which the deletion page would list one by one and which nobody may delete by hand.
    """

    audit_name = "mailing"

    list_display = [
        "id",
        "start_at",
        "end_at",
        "audience",
        "launched_at",
        *COUNT_COLUMNS.values(),
        "messages_link",
    ]
    list_filter = ["start_at", LaunchedListFilter]
    search_fields = ["text", "filter_tag"]
    readonly_fields = ["messages_link", "created_at", "updated_at", *PIPELINE_FIELDS]
    fieldsets = [
        (None, {"fields": ["start_at", "end_at", "text"]}),
        ("Audience", {"fields": ["filter_operator_code", "filter_tag"]}),
        (
            "Local-time window",
            {
                "fields": ["local_window_start", "local_window_end"],
                "description": "Each client gets the message only between these times of day in "
                "their own timezone; both or neither.",
            },
        ),
        ("Delivery", {"fields": ["messages_link", *PIPELINE_FIELDS, "created_at", "updated_at"]}),
    ]

    messages_pending = _count_column(MessageStatus.PENDING)
    messages_sending = _count_column(MessageStatus.SENDING)
    messages_sent = _count_column(MessageStatus.SENT)
    messages_failed = _count_column(MessageStatus.FAILED)
    messages_expired = _count_column(MessageStatus.EXPIRED)
    messages_unknown = _count_column(MessageStatus.UNKNOWN)
    messages_total = _count_column("total")
    messages_waiting_for_window = _count_column("waiting_for_window")

    def get_changelist(self, request: HttpRequest, **kwargs):
        return MailingChangeList

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.is_launched:
            readonly += sorted(FROZEN_AFTER_LAUNCH)
        return readonly

    def save_model(self, request, obj, form, change):
        if not change:
            super().save_model(request, obj, form, change)
            return
        editable = {name: value for name, value in form.cleaned_data.items() if name in EDITABLE_FIELDS}
        mailing_update(mailing=obj, data=editable)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            # Nothing has been delivered yet for a mailing being added.
            return self.fieldsets[:3]
        return self.fieldsets

    def get_actions(self, request):
        actions = super().get_actions(request)
        # The bulk action cannot tell launched mailings apart before building its huge confirmation page.
        actions.pop("delete_selected", None)
        return actions

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (obj is None or not obj.is_launched)

    @admin.display(description="audience")
    def audience(self, mailing: Mailing) -> str:
        return mailing.audience_description

    @admin.display(description="messages")
    def messages_link(self, mailing: Mailing) -> str:
        url = reverse("admin:messages_app_message_changelist")
        return format_html('<a href="{}?mailing__id__exact={}">Messages</a>', url, mailing.pk)
