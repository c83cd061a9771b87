from django.contrib import admin
from django.urls import include, path
from rest_framework.routers import SimpleRouter

from clients.views import ClientViewSet

router = SimpleRouter()
router.register("clients", ClientViewSet, basename="client")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(router.urls)),
]
