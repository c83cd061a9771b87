from django.contrib import admin

from .models import Message


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """View-only: delivery state belongs to the pipeline, so nobody adds, edits or deletes messages here.

    A hand-edited status would contradict the provider and the counts; to stop sending, end the mailing.
    """

    list_display = ["id", "mailing", "client", "status", "attempts", "sent_at", "provider", "last_error"]
    list_filter = ["status", "mailing"]
    list_select_related = ["mailing", "client"]
    # Exact match only, so the unique index on the phone answers it.
    search_fields = ["=client__phone"]
    search_help_text = "Full client phone, 7XXXXXXXXXX."
    # Never render a select of every client or mailing, should change permission ever come back.
    raw_id_fields = ["mailing", "client"]
    # One COUNT(*) per page is enough on a table of millions.
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
