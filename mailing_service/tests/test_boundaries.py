"""The web never loads the sender: checked in a fresh interpreter, as a web process starts."""

import json

from conftest import run_python

SENDER_MODULES_LOADED_BY_THE_URLCONF = """
import json, sys
import django
django.setup()
import mailing_service.urls
from django.urls import resolve
resolve("/api/v1/mailings/")
sender = ("aiohttp", "uvloop", "messages_app.sending.sender", "messages_app.sending.transports.probe")
print(json.dumps(sorted(name for name in sender if name in sys.modules)))
"""


def test_importing_the_urlconf_loads_no_sender_transport_aiohttp_or_uvloop():
    found = run_python(SENDER_MODULES_LOADED_BY_THE_URLCONF)

    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout.strip().splitlines()[-1]) == []
