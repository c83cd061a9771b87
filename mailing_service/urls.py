from django.conf import settings
from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from clients.views import ClientViewSet, OptOutViewSet
from mailings.views import MailingViewSet
from messages_app.views import MessageViewSet, receipt, reply
from ops import views as ops_views
from providers.views import ProviderViewSet

from .api import ApiRootView
from .collectors import DatabaseCollector, live_senders

router = SimpleRouter()
router.register("clients", ClientViewSet, basename="client")
router.register("mailings", MailingViewSet, basename="mailing")
router.register("messages", MessageViewSet, basename="message")
router.register("providers", ProviderViewSet, basename="provider")
router.register("optouts", OptOutViewSet, basename="optout")

urlpatterns = [
    # The operator console's pages, under the admin's paths and behind its login (console.urls).
    path("admin/", include("console.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", ApiRootView.as_view(), name="api-root"),
    path("api/v1/", include(router.urls)),
    # Open without credentials, like the two documentation pages that read it.
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path(
        "redoc/",
        SpectacularRedocView.as_view(url_name="schema", template_name="redoc_offline.html"),
        name="redoc",
    ),
    # Providers' delivery receipts and subscribers' replies: each authenticated by its provider's
    # secret, not by a user.
    path("receipts/<slug:provider>/", receipt, name="receipt"),
    path("replies/<slug:provider>/", reply, name="reply"),
    path("health/", ops_views.HealthView.as_view(), name="health"),
    path("health/live", ops_views.LiveView.as_view(), name="health-live"),
    path("health/ready", ops_views.ReadyView.as_view(senders=live_senders), name="health-ready"),
    path("metrics", ops_views.metrics, {"collectors": [DatabaseCollector()]}, name="metrics"),
    # Where browsers look for an icon when a page names none (the API's JSON, for one).
    path(
        "favicon.ico",
        RedirectView.as_view(url=static("favicon.svg"), permanent=True, http_method_names=["get", "head"]),
        name="favicon",
    ),
]

# Under /api/ Django's own error pages answer JSON like the API (mailing_service.errors).
handler400 = "mailing_service.errors.bad_request"
handler403 = "mailing_service.errors.permission_denied"
handler404 = "mailing_service.errors.page_not_found"
handler500 = "mailing_service.errors.server_error"

if settings.OIDC_ENABLED:
    urlpatterns.append(path("oidc/", include("mozilla_django_oidc.urls")))
