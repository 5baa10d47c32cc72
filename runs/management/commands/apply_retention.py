"""Delete the finished Runs past their retention now, or (--dry-run) say how many that is."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from runs.retention import Policy, count_expired, delete_batches


class Command(BaseCommand):
    help = "Apply the Run retention settings now (the housekeeping job does it every pass)."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true",
                            help="only report what would be deleted")

    def handle(self, *args, dry_run: bool = False, **options):
        policy = Policy.from_settings()
        if not policy.default_days and not policy.by_operation:
            raise CommandError(
                "No retention is configured (RUN_RETENTION_DAYS, "
                "RUN_RETENTION_DAYS_BY_OPERATION): every Run is kept."
            )
        now = timezone.now()
        if dry_run:
            counts = count_expired(policy, now)
            detail = ", ".join(f"{op}: {n}" for op, n in sorted(counts.items()))
            self.stdout.write(
                f"Would delete {sum(counts.values())} Run(s)"
                + (f" ({detail})." if detail else ".")
            )
            return
        deleted = 0
        for size in delete_batches(policy, now):
            deleted += size
            if options["verbosity"] > 1:
                self.stdout.write(f"  deleted a batch of {size}")
        self.stdout.write(self.style.SUCCESS(
            f"Deleted {deleted} Run(s) in batches of at most {settings.RUN_RETENTION_BATCH_SIZE}."
        ))
