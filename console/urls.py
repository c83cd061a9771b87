"""The console's pages, mounted under /admin/ ahead of the admin's own: the dashboard, and a
mailing's progress and buttons beside its admin page (admin/mailings/mailing/<id>/...). Every view
goes through the admin's login (`admin.site.admin_view`) and checks its own permission."""

from django.contrib import admin
from django.urls import path

from . import views

app_name = "console"


urlpatterns = [
    path("dashboard/", admin.site.admin_view(views.dashboard_view), name="dashboard"),
    path(
        "mailings/mailing/<int:mailing_id>/progress/",
        admin.site.admin_view(views.mailing_progress_view),
        name="mailing-progress",
    ),
    path(
        "mailings/mailing/<int:mailing_id>/action/<str:action>/",
        admin.site.admin_view(views.mailing_action_view),
        name="mailing-action",
    ),
    path(
        "mailings/mailing/<int:mailing_id>/resend/",
        admin.site.admin_view(views.mailing_resend_view),
        name="mailing-resend",
    ),
    path(
        "mailings/mailing/<int:mailing_id>/test-send/",
        admin.site.admin_view(views.mailing_test_send_view),
        name="mailing-test-send",
    ),
]
