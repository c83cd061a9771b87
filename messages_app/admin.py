from django.contrib import admin

from accounts.roles import VIEW_PHONE

from .models import Message


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """View-only: delivery state belongs to the pipeline, so nobody adds, edits or deletes messages here.

    A hand-edited status would contradict the provider and the counts; to stop sending, end the mailing.
    """

    list_display = [
        "id",
        "mailing",
        "client",
        "recipient",
        "status",
        "attempts",
        "sent_at",
        "provider",
        "last_error",
    ]
    list_filter = ["status", "mailing"]
    list_select_related = ["mailing", "client"]
    # Exact match only, so the unique index on the phone answers it.
    search_fields = ["=client__phone"]
    search_help_text = "Full client phone, 7XXXXXXXXXX."
    # Never render a select of every client or mailing, should change permission ever come back.
    raw_id_fields = ["mailing", "client"]
    # One COUNT(*) per page is enough on a table of millions.
    show_full_result_count = False

    def get_search_fields(self, request):
        # Whether a phone has messages would tell those who may not see phones that it is a client's.
        return self.search_fields if request.user.has_perm(VIEW_PHONE) else []

    @admin.display(description="phone")
    def recipient(self, message: Message) -> str:
        """Masked in lists, as logs show phones; the page of one message shows it in clear to those
        who may see phones."""
        return message.masked_phone

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if request.user.has_perm(VIEW_PHONE):
            return fields
        return ["recipient" if name == "phone" else name for name in fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
