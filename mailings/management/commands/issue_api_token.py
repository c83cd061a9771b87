from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = (
        "Print the API token of an operator account, creating the token if it has none. "
        "Send it as the header 'Authorization: Token <token>'."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--create-user",
            action="store_true",
            help="Create the account if it does not exist; it gets no password, so it can only use the API.",
        )

    def handle(self, *args, username: str, create_user: bool, **options):
        User = get_user_model()
        try:
            user = User.objects.get_by_natural_key(username)
        except User.DoesNotExist:
            if not create_user:
                raise CommandError(f"No user {username!r}; pass --create-user to create one.") from None
            user = User(**{User.USERNAME_FIELD: username})
            user.set_unusable_password()
            user.save()
            self.stderr.write(f"Created user {username!r} without a password.")
        token, _ = Token.objects.get_or_create(user=user)
        # Alone on stdout, so that scripts can capture it: TOKEN=$(manage.py issue_api_token ...).
        self.stdout.write(token.key)
