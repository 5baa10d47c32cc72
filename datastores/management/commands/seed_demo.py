"""Create the demo: a generated source database, an enrichment database, a datastore, teams and
users for every persona, the catalogue with active checks for the demo's deliberate defects
(so the first Scan finds them as anomalies), and a first Sync. Safe to run again: existing
objects are kept."""

import sqlite3

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Level, Role, Team, User
from datastores.anomalies import check_spec
from datastores.demo_source import DEMO_CHECKS, generate_demo_source
from datastores.models import Check, CheckOrigin, CheckStatus, Container, Datastore
from datastores.quality import describe

DEMO_PASSWORD = "assay-demo"
PERSONAS = [
    # username, role, team level on the demo datastore (None: no team)
    ("admin", Role.ADMIN, None),
    ("editor", Role.MEMBER, Level.EDITOR),
    ("author", Role.MEMBER, Level.AUTHOR),
    ("drafter", Role.MEMBER, Level.DRAFTER),
    ("viewer", Role.MEMBER, Level.VIEWER),
    ("reporter", Role.MEMBER, Level.REPORTER),
    ("outsider", Role.MEMBER, None),
]


class Command(BaseCommand):
    help = "Create the demo datastore and demo users (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=20_000, help="orders in the demo source")
        parser.add_argument("--no-sync", action="store_true", help="do not launch a first Sync")

    def handle(self, *args, rows: int, no_sync: bool, **options):
        demo_dir = settings.VAR_DIR / "demo"
        demo_dir.mkdir(parents=True, exist_ok=True)
        # Where datastore files may live by default (DATASTORE_FILE_DIRS): ready to use.
        (settings.VAR_DIR / "sources").mkdir(parents=True, exist_ok=True)
        source = demo_dir / "source.sqlite3"
        if not source.exists():
            self.stdout.write(f"Generating the demo source database ({rows} orders)...")
            generate_demo_source(f"sqlite:///{source}", rows=rows)
        enrichment = demo_dir / "enrichment.sqlite3"
        # Source URLs must point at existing files; an empty SQLite database is a valid target.
        sqlite3.connect(enrichment).close()
        with transaction.atomic():
            datastore, _ = Datastore.objects.get_or_create(
                name="Demo warehouse",
                defaults={
                    "source_url": f"sqlite:///{source}",
                    "enrichment_url": f"sqlite:///{enrichment}",
                    "enrichment_prefix": "demo",
                },
            )
            for username, role, level in PERSONAS:
                user, made = User.objects.get_or_create(
                    username=username, defaults={"role": role, "email": f"{username}@demo.local"}
                )
                if made:
                    user.set_password(DEMO_PASSWORD)
                    user.is_staff = user.is_superuser = role == Role.ADMIN
                    user.save()
                if level is not None:
                    team, _ = Team.objects.get_or_create(
                        name=f"Demo {level.label}s", defaults={"level": level}
                    )
                    team.members.add(user)
                    team.datastores.add(datastore)
        self.seed_checks(datastore)
        if not no_sync and not datastore.runs.exists():
            from runs.services import run_launch

            admin = User.objects.get(username="admin")
            run_launch(user=admin, datastore=datastore, operation="sync", config={})
        self.stdout.write(self.style.SUCCESS(f"Demo ready. Users (password: {DEMO_PASSWORD}):"))
        for username, role, level in PERSONAS:
            what = level.label if level else ("admin role" if role == Role.ADMIN else "no team")
            self.stdout.write(f"  {username:<9} {what}")
        self.stdout.write("Launch a Scan of the demo warehouse: its findings show under Anomalies.")

    def seed_checks(self, datastore: Datastore) -> None:
        """Catalogue the demo source and add one active check per deliberate defect.

        Only on a datastore without checks, so a user's own changes are never undone. The
        catalogue is read here, not by the Sync Run, so that the checks exist at once.
        """
        if Check.objects.filter(datastore=datastore).exists():
            return
        import sqlalchemy as sa

        from datastores.sources import create_engine
        from runs.operations.sync import store_container

        engine = create_engine(datastore.source_url)  # vetted like every connection
        try:
            with engine.connect() as conn:
                inspector = sa.inspect(conn)
                for name in sorted({container for container, *_ in DEMO_CHECKS.values()}):
                    store_container(datastore, name, "table", inspector.get_columns(name),
                                    recreate=False)
        finally:
            engine.dispose()
        containers = {c.name: c for c in Container.objects.filter(datastore=datastore)}
        with transaction.atomic():
            for container, check_type, field, params in DEMO_CHECKS.values():
                check = Check(
                    container=containers[container], type=check_type, field_name=field,
                    params=params, status=CheckStatus.ACTIVE, origin=CheckOrigin.AUTHORED,
                )
                check.description = describe(check_spec(check))
                check.save()
        self.stdout.write(f"Seeded {len(DEMO_CHECKS)} active checks on the demo datastore.")
