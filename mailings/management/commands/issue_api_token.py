from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from accounts.models import TokenExpiry, token_expires_at
from accounts.roles import ADMINS, ROLE_GROUPS


class Command(BaseCommand):
    help = (
        "Print the API token of an account, creating the token if it has none or it expired. "
        "Send it as the header 'Authorization: Token <token>'. --role puts the account in that role's "
        "group (operator: reads and writes everything; viewer: reads, phones masked; admin: also users "
        "and tokens in the admin); --revoke deletes its token."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=sorted(ROLE_GROUPS), help="Make this the account's only role.")
        parser.add_argument(
            "--create-user",
            action="store_true",
            help="Create the account if it does not exist (needs --role); it gets no password, so it can "
            "only use the API.",
        )
        parser.add_argument(
            "--expires-in",
            type=int,
            metavar="DAYS",
            help="The token stops working after this many days (default: API_TOKEN_LIFETIME_DAYS after "
            "it was made). A new token is made if the account's has expired.",
        )
        parser.add_argument(
            "--revoke", action="store_true", help="Delete the account's token and print nothing."
        )

    @transaction.atomic
    def handle(self, *args, username, role, create_user, expires_in, revoke, **options):
        if expires_in is not None and expires_in < 1:
            raise CommandError("--expires-in takes a number of days from 1.")
        user = self._user(username, create_user=create_user, role=role)
        if revoke:
            deleted, _ = Token.objects.filter(user=user).delete()
            self.stderr.write(
                f"Revoked the token of {username!r}." if deleted else f"{username!r} had no token."
            )
            return
        if role:
            self._set_role(user, role)
        token = self._live_token(user)
        if expires_in is not None:
            TokenExpiry.objects.update_or_create(
                token=token, defaults={"expires_at": timezone.now() + timedelta(days=expires_in)}
            )
        # Alone on stdout, so that scripts can capture it: TOKEN=$(manage.py issue_api_token ...).
        self.stdout.write(token.key)

    def _user(self, username, *, create_user, role):
        User = get_user_model()
        try:
            return User.objects.get_by_natural_key(username)
        except User.DoesNotExist:
            if not create_user:
                raise CommandError(
                    f"No user {username!r}; pass --create-user and --role to create one."
                ) from None
        if not role:
            raise CommandError("A new account needs a role: --role operator, viewer or admin.")
        user = User(**{User.USERNAME_FIELD: username})
        user.set_unusable_password()
        user.save()
        self.stderr.write(f"Created user {username!r} without a password.")
        return user

    @staticmethod
    def _set_role(user, role):
        user.groups.remove(*Group.objects.filter(name__in=ROLE_GROUPS.values()))
        user.groups.add(Group.objects.get(name=ROLE_GROUPS[role]))
        # Admins use the admin site, which lets staff in only.
        user.is_staff = user.is_superuser or ROLE_GROUPS[role] == ADMINS
        user.save(update_fields=["is_staff"])

    @staticmethod
    def _live_token(user) -> Token:
        token = Token.objects.select_related("expiry").filter(user=user).first()
        expires_at = token and token_expires_at(token)
        if token is not None and (expires_at is None or expires_at > timezone.now()):
            return token
        Token.objects.filter(user=user).delete()
        return Token.objects.create(user=user)
