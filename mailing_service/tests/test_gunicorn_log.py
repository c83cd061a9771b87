import runpy
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

from gunicorn.config import Config
from gunicorn.glogging import Logger

CONFIG = Path(__file__).resolve().parents[2] / "gunicorn.conf.py"


def test_the_access_log_line_has_the_path_but_not_the_query_string():
    config = Config()
    config.set("access_log_format", runpy.run_path(str(CONFIG))["access_log_format"])
    request = SimpleNamespace(method="GET", path="/api/v1/clients/", query="phone=79161234567", headers=[])
    environ = {
        "REMOTE_ADDR": "10.0.0.1",
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/api/v1/clients/?phone=79161234567",
        "PATH_INFO": "/api/v1/clients/",
        "QUERY_STRING": "phone=79161234567",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    response = SimpleNamespace(status="200 OK", sent=12, headers=[], response_length=12)

    atoms = Logger(config).atoms(response, request, environ, timedelta(milliseconds=5))
    line = config.access_log_format % atoms

    assert '"GET /api/v1/clients/ HTTP/1.1" 200' in line
    assert "7916" not in line
