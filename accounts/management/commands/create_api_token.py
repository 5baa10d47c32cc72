"""Issue an API token for a user and print its key (the only time it is ever shown)."""

from django.core.management.base import BaseCommand, CommandError

from accounts.models import ApiToken, User


class Command(BaseCommand):
    help = "Create a REST API / CLI token for a user and print its key once."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="cli", help="a label to recognise the token by")

    def handle(self, *args, username: str, name: str, **options):
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        if not user.is_active:
            raise CommandError(f"User {username!r} is deactivated.")
        name = name.strip()
        if not name or len(name) > 100:
            raise CommandError("--name must be 1 to 100 characters.")
        _, key = ApiToken.issue(user=user, name=name)
        self.stderr.write(
            f"Token {name!r} for {username}. Store it now: only its hash is kept."
        )
        self.stdout.write(key)
