"""The console's pages, mounted under /admin/ ahead of the admin's own: the dashboard, and a
mailing's progress and buttons beside its admin page (admin/mailings/mailing/<id>/...). Every view
goes through the admin's login (`admin.site.admin_view`) and checks its own permission."""

from django.contrib import admin
from django.urls import path

from . import views

app_name = "console"


def mailing_page(suffix: str, view, name: str):
    """A page of one mailing's console, beside its admin page."""
    return path(f"mailings/mailing/<int:mailing_id>/{suffix}", admin.site.admin_view(view), name=name)


urlpatterns = [
    path("dashboard/", admin.site.admin_view(views.dashboard_view), name="dashboard"),
    mailing_page("progress/", views.mailing_progress_view, "mailing-progress"),
    mailing_page("action/<str:action>/", views.mailing_action_view, "mailing-action"),
    mailing_page("resend/", views.mailing_resend_view, "mailing-resend"),
    mailing_page("test-send/", views.mailing_test_send_view, "mailing-test-send"),
    mailing_page("export/", views.mailing_export_view, "mailing-export"),
]
