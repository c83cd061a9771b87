"""The audit log: every change to clients, mailings and providers, through the API or the admin, is one line
`<name>=<id> <what> by <user>` with the id as a field (`client_id`, `mailing_id`) beside the
request's id."""

import logging
from collections.abc import Mapping

from rest_framework.permissions import SAFE_METHODS

log = logging.getLogger(__name__)

_API_ACTIONS = {"create": "created", "update": "updated", "partial_update": "updated", "destroy": "deleted"}


def audit(*, name: str, pk: int | None, done: str, user) -> None:
    log.info(
        "%s=%s %s by %s",
        name,
        "*" if pk is None else pk,
        done,
        user.get_username(),
        extra={} if pk is None else {f"{name}_id": pk},
    )


# On an answer repeated from an earlier request with the same Idempotency-Key (ops.idempotency): that
# request did the work and was audited, the repeat did nothing.
REPLAYED_HEADER = "Idempotent-Replayed"


class AuditLogMixin:
    """For API viewsets: logs create, update, delete and any other action that is not a read (a
    mailing's lifecycle actions). In finalize_response, so that the viewset's perform_* methods and
    actions need not remember to. Set `audit_name` ("client", "mailing"), and list in
    `audited_in_services` the actions whose service writes the line itself (with what it did, and
    for the admin too): those are not logged twice."""

    audit_name: str
    audited_in_services: frozenset[str] = frozenset()

    def finalize_response(self, request, response, *args, **kwargs):
        action = getattr(self, "action", None)
        if action in self.audited_in_services:
            return super().finalize_response(request, response, *args, **kwargs)
        done = _API_ACTIONS.get(action) or (action if request.method not in SAFE_METHODS else None)
        if done and 200 <= response.status_code < 300 and not response.has_header(REPLAYED_HEADER):
            pk = self.kwargs.get("pk")
            if pk is None and isinstance(response.data, Mapping):
                pk = response.data.get("id")
            pk = int(pk) if str(pk).isdigit() else None  # None: an action on the whole list
            audit(name=self.audit_name, pk=pk, done=done, user=request.user)
        return super().finalize_response(request, response, *args, **kwargs)


class AuditLogAdminMixin:
    """For ModelAdmins: logs additions, changes and deletions. Set `audit_name`; set
    `deletions_audited_in_services` when delete_model calls a service that logs the deletion."""

    audit_name: str
    deletions_audited_in_services = False

    def log_addition(self, request, obj, message):
        audit(name=self.audit_name, pk=obj.pk, done="created in the admin", user=request.user)
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        audit(name=self.audit_name, pk=obj.pk, done="updated in the admin", user=request.user)
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        if not self.deletions_audited_in_services:
            for obj in queryset:  # a queryset (bulk action) or a list (delete view)
                audit(name=self.audit_name, pk=obj.pk, done="deleted in the admin", user=request.user)
        return super().log_deletions(request, queryset)
