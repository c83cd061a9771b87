import os

from django.core.asgi import get_asgi_application

from mailing_service.local_state import require_secret_key

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailing_service.settings")

application = get_asgi_application()
require_secret_key()
