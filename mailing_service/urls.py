from django.contrib import admin
from django.urls import include, path
from rest_framework.routers import SimpleRouter

from clients.views import ClientViewSet
from mailings.views import MailingViewSet
from messages_app.views import MessageViewSet

router = SimpleRouter()
router.register("clients", ClientViewSet, basename="client")
router.register("mailings", MailingViewSet, basename="mailing")
router.register("messages", MessageViewSet, basename="message")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(router.urls)),
]
