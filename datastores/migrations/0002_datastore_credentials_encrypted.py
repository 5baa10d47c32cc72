"""Datastore URLs move to encrypted columns; the source's dialect is kept in clear."""

from django.db import migrations, models


def encrypt_urls(apps, schema_editor):
    from datastores.credentials import encrypt
    from datastores.models import backend_name

    Datastore = apps.get_model("datastores", "Datastore")
    for datastore in Datastore.objects.all():
        plain_source = datastore.source_url_encrypted
        datastore.dialect = backend_name(plain_source)
        datastore.source_url_encrypted = encrypt(plain_source)
        datastore.enrichment_url_encrypted = encrypt(datastore.enrichment_url_encrypted)
        datastore.save(update_fields=["dialect", "source_url_encrypted", "enrichment_url_encrypted"])


def decrypt_urls(apps, schema_editor):
    from datastores.credentials import decrypt

    Datastore = apps.get_model("datastores", "Datastore")
    for datastore in Datastore.objects.all():
        datastore.source_url_encrypted = decrypt(datastore.source_url_encrypted)
        datastore.enrichment_url_encrypted = decrypt(datastore.enrichment_url_encrypted)
        datastore.save(update_fields=["source_url_encrypted", "enrichment_url_encrypted"])


class Migration(migrations.Migration):

    dependencies = [
        ("datastores", "0001_initial"),
    ]

    operations = [
        migrations.RenameField(
            model_name="datastore", old_name="source_url", new_name="source_url_encrypted"
        ),
        migrations.RenameField(
            model_name="datastore", old_name="enrichment_url", new_name="enrichment_url_encrypted"
        ),
        migrations.AddField(
            model_name="datastore",
            name="dialect",
            field=models.CharField(blank=True, default="", max_length=40),
        ),
        migrations.RunPython(encrypt_urls, decrypt_urls),
    ]
