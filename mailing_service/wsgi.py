import os

from django.core.wsgi import get_wsgi_application

from mailing_service.local_state import require_secret_key

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailing_service.settings")

application = get_wsgi_application()
require_secret_key()
