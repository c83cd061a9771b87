from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from messages_app.models import MessageStatus

from .models import Mailing

# Read-only columns and form fields: the launcher and the dispatchers write these, never a person.
PIPELINE_FIELDS = [
    "launched_at",
    "fanout_cursor",
    "fanout_lease_until",
    "fanout_completed_at",
    "dispatch_heartbeat_at",
]


def _with_message_counts(queryset: QuerySet[Mailing]) -> QuerySet[Mailing]:
    """One `<status>_count` per message status and `total_count`, in the same query as the mailings.

    Stands in for mailings.selectors.mailings_with_message_counts until that selector exists.
    """
    per_status = {
        f"{status}_count": Count("messages", filter=Q(messages__status=status)) for status in MessageStatus
    }
    return queryset.annotate(**per_status, total_count=Count("messages"))


def _count_column(status: str | None):
    """A changelist column showing one annotated count; `None` stands for the total."""
    attribute = f"{status or 'total'}_count"

    @admin.display(description=status or "total", ordering=attribute)
    def column(self, mailing: Mailing) -> int:
        return getattr(mailing, attribute)

    column.__name__ = attribute
    return column


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
class MailingAdmin(admin.ModelAdmin):
    """Mailings with their delivery counts; messages are reached through a filtered link, not an inline.

    A mailing can be deleted here only before it is launched: afterwards it has messages (possibly
    millions), which the deletion page would list one by one and which nobody may delete by hand.
    """

    list_display = [
        "id",
        "start_at",
        "end_at",
        "audience",
        "launched_at",
        "pending_count",
        "sending_count",
        "sent_count",
        "failed_count",
        "expired_count",
        "total_count",
        "messages_link",
    ]
    list_filter = ["start_at", LaunchedListFilter]
    search_fields = ["text", "filter_tag"]
    readonly_fields = ["messages_link", "created_at", "updated_at", *PIPELINE_FIELDS]
    fieldsets = [
        (None, {"fields": ["start_at", "end_at", "text"]}),
        ("Audience", {"fields": ["filter_operator_code", "filter_tag"]}),
        ("Delivery", {"fields": ["messages_link", *PIPELINE_FIELDS, "created_at", "updated_at"]}),
    ]

    pending_count = _count_column(MessageStatus.PENDING)
    sending_count = _count_column(MessageStatus.SENDING)
    sent_count = _count_column(MessageStatus.SENT)
    failed_count = _count_column(MessageStatus.FAILED)
    expired_count = _count_column(MessageStatus.EXPIRED)
    total_count = _count_column(None)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Mailing]:
        return _with_message_counts(super().get_queryset(request))

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            # Nothing has been delivered yet for a mailing being added.
            return self.fieldsets[:2]
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
