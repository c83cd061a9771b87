import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

USERNAME = "admin"


def password_file() -> Path:
    return Path(settings.VAR_DIR) / "demo_admin_password"


def stored_password() -> str:
    try:
        return password_file().read_text().strip()
    except FileNotFoundError:
        return ""


def store_password(password: str) -> None:
    path = password_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(password + "\n")
    # The mode given to os.open only applies to a new file.
    path.chmod(0o600)


class Command(BaseCommand):
    help = (
        "For local runs: make sure a superuser 'admin' exists, with a random password kept in "
        "var/demo_admin_password, and print how to log in and its API token. Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="Where the site is served.")

    def handle(self, *args, base_url: str, **options):
        User = get_user_model()
        password = stored_password() or secrets.token_urlsafe(16)
        admin, created = User.objects.get_or_create(**{User.USERNAME_FIELD: USERNAME})
        flags_wrong = not (admin.is_active and admin.is_staff and admin.is_superuser)
        # Checking costs one password hash; it keeps the printed password the one that works.
        if created or flags_wrong or not admin.check_password(password):
            admin.is_active = admin.is_staff = admin.is_superuser = True
            admin.set_password(password)
            admin.save()
        if stored_password() != password:
            store_password(password)
        token, _ = Token.objects.get_or_create(user=admin)
        self.stdout.write(f"Admin: {base_url.rstrip('/')}/admin/  user: {USERNAME}  password: {password}")
        self.stdout.write(f"API token: {token.key}")
