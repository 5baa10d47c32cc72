"""Create an Assay admin (the first one, typically): the admin role, and a password or a
one-time set-password link."""

import getpass
import os
import sys

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import Role, User
from accounts.users import set_password_path
from audit.models import AuditAction
from audit.services import record


class Command(BaseCommand):
    help = (
        "Create a user with the Assay admin role. The password comes from the prompt, or from "
        "the ASSAY_ADMIN_PASSWORD environment variable; with --link, a one-time "
        "set-password link is printed instead."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument("--link", action="store_true",
                            help="print a one-time set-password link instead of asking")
        parser.add_argument("--base-url", default=os.environ.get("ASSAY_BASE_URL", ""),
                            help="the server's address, to print the link in full")

    def handle(self, *args, username: str, email: str, link: bool, base_url: str, **options):
        username = username.strip()
        try:
            User.username_validator(username)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        if User.objects.filter(username__iexact=username).exists():
            raise CommandError(f"A user named {username!r} already exists.")
        user = User(username=username, email=email, role=Role.ADMIN, is_staff=True,
                    is_superuser=True)
        password = "" if link else self._password(user)
        with transaction.atomic():
            if password:
                user.set_password(password)
            else:
                user.set_unusable_password()
            user.save()
            record(None, AuditAction.USER_CREATED, user, None,
                   {"username": username, "role": Role.ADMIN, "via": "manage.py create_admin"})
        self.stderr.write(f"Admin {username} created.")
        if link:
            self.stdout.write(base_url.rstrip("/") + set_password_path(user))

    def _password(self, user: User) -> str:
        password = os.environ.get("ASSAY_ADMIN_PASSWORD", "")
        if not password:
            if not sys.stdin.isatty():
                raise CommandError(
                    "No password: set ASSAY_ADMIN_PASSWORD, or run interactively, or use --link."
                )
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The two passwords differ.")
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        return password
