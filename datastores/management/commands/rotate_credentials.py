"""Re-encrypt every stored datastore URL with the first of CREDENTIAL_KEYS.

Rotation: put a new key first in CREDENTIAL_KEYS (keep the old ones after it), restart Assay's
processes, run this command, then remove the old keys. ``--new-key`` prints a fresh key.
"""

from django.core.management.base import BaseCommand, CommandError

from datastores.credentials import CredentialsUnreadable, new_key, rotate
from datastores.models import Datastore

COLUMNS = ("source_url_encrypted", "enrichment_url_encrypted")


class Command(BaseCommand):
    help = "Re-encrypt every datastore's credentials with the first of CREDENTIAL_KEYS."

    def add_arguments(self, parser):
        parser.add_argument(
            "--new-key", action="store_true", help="print a fresh key and change nothing"
        )

    def handle(self, *args, **options):
        if options["new_key"]:
            self.stdout.write(new_key())
            return
        rotated = 0
        for pk in Datastore.objects.order_by("pk").values_list("pk", flat=True):
            rotated += self._rotate(pk)
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {rotated} datastore(s)."))

    def _rotate(self, pk: int) -> int:
        # Compare-and-set on the old ciphertext: a datastore saved meanwhile (already under the
        # new key) is read again rather than overwritten.
        for _ in range(5):
            row = Datastore.objects.filter(pk=pk).values(*COLUMNS).first()
            if row is None:
                return 0  # deleted meanwhile
            try:
                fresh = {column: rotate(row[column]) for column in COLUMNS}
            except CredentialsUnreadable as exc:
                raise CommandError(f"Datastore #{pk}: {exc}") from None
            if Datastore.objects.filter(pk=pk, **row).update(**fresh):
                return 1
        raise CommandError(f"Datastore #{pk} kept changing; run the command again.")
