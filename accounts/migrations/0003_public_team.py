from django.db import migrations


def create_public_team(apps, schema_editor):
    Team = apps.get_model("accounts", "Team")
    Team.objects.get_or_create(is_public=True, defaults={"name": "Public", "level": 20})


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_initial")]

    operations = [migrations.RunPython(create_public_team, migrations.RunPython.noop)]
