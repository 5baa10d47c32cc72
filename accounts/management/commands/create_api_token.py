"""Issue an API token for a user and print its key (the only time it is ever shown)."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.models import User
from accounts.tokens import token_create
from runs.errors import InvalidInput


class Command(BaseCommand):
    help = "Create a REST API / CLI token for a user and print its key once."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="cli", help="a label to recognise the token by")
        parser.add_argument("--expires-days", type=int, default=None,
                            help="the token stops working after this many days")

    def handle(self, *args, username: str, name: str, expires_days: int | None, **options):
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        if expires_days is not None and not 1 <= expires_days <= 3650:
            raise CommandError("--expires-days must be 1 to 3650.")
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        try:
            _, key = token_create(actor=None, user=user, name=name, expires_at=expires_at)
        except InvalidInput as exc:
            raise CommandError(exc.detail) from None
        self.stderr.write(
            f"Token {name.strip()!r} for {username}. Store it now: only its hash is kept."
        )
        self.stdout.write(key)
