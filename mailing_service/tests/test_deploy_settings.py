"""`manage.py check --deploy` reports nothing with the production variables set (the ones
deploy/k8s/base/configmap.yaml and secret.example.yaml carry)."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_ALLOWED_HOSTS": "mail.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://mail.example.com",
    "DJANGO_SECURE_PROXY_SSL_HEADER": "true",
    "DJANGO_SECURE_SSL_REDIRECT": "true",
    "DJANGO_SECURE_HSTS_SECONDS": "31536000",
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "DJANGO_SECURE_HSTS_PRELOAD": "true",
    "DJANGO_SECURE_COOKIES": "true",
    "DJANGO_TRUSTED_PROXY_COUNT": "1",
}


def check_deploy(**variables) -> subprocess.CompletedProcess:
    env = {**os.environ, **variables}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_reports_nothing_with_the_production_variables():
    result = check_deploy(**PRODUCTION, DJANGO_SECRET_KEY=secrets.token_urlsafe(50))

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "System check identified no issues (0 silenced)."


def test_check_deploy_names_what_local_defaults_leave_out():
    result = check_deploy(DJANGO_DEBUG="false", DJANGO_SECRET_KEY="")

    assert result.returncode != 0
    for code in ["W004", "W008", "W012", "W016", "accounts.W001"]:
        assert code in result.stderr
