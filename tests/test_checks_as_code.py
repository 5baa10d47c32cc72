"""Checks as code: ``assay checks export`` / ``assay checks apply``, as a real subprocess over
real HTTP, plus the check and anomaly CLI commands."""

import pytest
import yaml

from datastores.models import Anomaly, AnomalyStatus, Check, CheckStatus
from tests.api_support import orders_container, token_for
from tests.test_cli import assay, assert_clean_failure, server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def catalogue(datastore):
    container, checks = orders_container(datastore)
    Check.objects.filter(pk=checks["status"].pk).update(origin="inferred")
    return container, checks


def export(live_server, token, datastore, path):
    result = assay("checks", "export", *server(live_server, token), "--datastore", datastore.pk)
    assert result.returncode == 0, result.stderr
    path.write_text(result.stdout)
    return result.stdout


def test_export_edit_apply_export_again_gives_the_edited_file(
    live_server, datastore, author, catalogue, tmp_path
):
    token = token_for(author)
    exported = tmp_path / "checks.yaml"
    original = export(live_server, token, datastore, exported)
    document = yaml.safe_load(original)
    assert document["datastore"] == datastore.pk and len(document["checks"]) == 6
    by_field = {(c["type"], c["field"]): c for c in document["checks"]}

    # Edit: new parameters, a status change, a description; written back as YAML text.
    draft = by_field[("max_length", "customer")]
    draft["params"]["length"] = 40
    draft["status"] = "active"
    by_field[("not_null", "customer")]["description"] = "Every order names its customer"
    by_field[("expected_values", "status")]["status"] = "archived"  # inferred: status only
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100))

    dry = assay("checks", "apply", *server(live_server, token), edited, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert ("Would apply (dry run, nothing changed): 0 created, 3 updated, 3 unchanged."
            in dry.stdout)
    assert f"~ #{draft['id']} orders: customer: max length: params " in dry.stdout
    assert Check.objects.get(pk=draft["id"]).params == {"length": 3}

    applied = assay("checks", "apply", *server(live_server, token), edited)
    assert applied.returncode == 0, applied.stderr
    assert "Applied: 0 created, 3 updated, 3 unchanged." in applied.stdout
    check = Check.objects.get(pk=draft["id"])
    assert check.params == {"length": 40} and check.status == CheckStatus.ACTIVE

    again = tmp_path / "again.yaml"
    export(live_server, token, datastore, again)
    assert yaml.safe_load(again.read_text()) == yaml.safe_load(edited.read_text())

    # A new entry (no id) is created, as authored.
    document["checks"].append({"container": "orders", "type": "not_null", "field": "status",
                               "params": {}, "status": "draft"})
    edited.write_text(yaml.safe_dump(document, sort_keys=False))
    created = assay("checks", "apply", *server(live_server, token), edited)
    assert "Applied: 1 created, 0 updated, 6 unchanged." in created.stdout, created.stderr
    assert Check.objects.filter(field_name="status", type="not_null", origin="authored").exists()


def test_an_invalid_file_changes_nothing_and_names_the_line(
    live_server, datastore, author, catalogue, tmp_path
):
    token = token_for(author)
    exported = tmp_path / "checks.yaml"
    export(live_server, token, datastore, exported)
    before = list(Check.objects.order_by("id").values())
    lines = exported.read_text().splitlines()
    # Break the third entry's parameters and make the first one's a legal change: the valid
    # change must not be applied either.
    entries = [i for i, line in enumerate(lines) if line.startswith("- id:")]
    third_params = next(i for i in range(entries[2], len(lines)) if "params:" in lines[i])
    lines[third_params] = "  params: {bogus: 1}"
    first_description = next(i for i in range(entries[0], len(lines))
                             if lines[i].startswith("  description:"))
    lines[first_description] = "  description: changed"
    broken = tmp_path / "broken.yaml"
    broken.write_text("\n".join(lines) + "\n")

    result = assay("checks", "apply", *server(live_server, token), broken)
    assert_clean_failure(result, 2, f"{broken}:{third_params + 1}: 2.params",
                         "invalid, nothing was changed")
    assert list(Check.objects.order_by("id").values()) == before

    syntax = tmp_path / "syntax.yaml"
    syntax.write_text("datastore: 1\nchecks:\n  - id: [unclosed\n")
    assert_clean_failure(assay("checks", "apply", *server(live_server, token), syntax), 2,
                         f"{syntax}:", "not valid YAML")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(f"datastore: {datastore.pk}\nchecks:\n  - container: nowhere\n"
                       "    type: not_null\n    field: id\n")
    assert_clean_failure(assay("checks", "apply", *server(live_server, token), unknown), 2,
                         f"{unknown}:3: 0.container: Unknown container 'nowhere'")


def test_apply_needs_the_levels_of_its_changes(live_server, datastore, drafter, reporter,
                                               catalogue, tmp_path):
    exported = tmp_path / "checks.yaml"
    export(live_server, token_for(drafter), datastore, exported)
    document = yaml.safe_load(exported.read_text())
    document["checks"][0]["status"] = "archived"
    exported.write_text(yaml.safe_dump(document))
    result = assay("checks", "apply", *server(live_server, token_for(drafter)), exported)
    assert_clean_failure(result, 1, "does not allow", "HTTP 403")
    # Reporters cannot even export: the parameters are source values.
    denied = assay("checks", "export", *server(live_server, token_for(reporter)),
                   "--datastore", datastore.pk)
    assert_clean_failure(denied, 1, "needs the Viewer permission")


def test_check_and_anomaly_commands(live_server, datastore, author, catalogue):
    container, checks = catalogue
    token = token_for(author)
    listing = assay("checks", "list", *server(live_server, token), "--status", "draft")
    assert listing.returncode == 0 and "customer: max length" in listing.stdout
    activated = assay("checks", "activate", *server(live_server, token), checks["draft"].pk)
    assert activated.returncode == 0 and "activate done" in activated.stdout
    assert Check.objects.get(pk=checks["draft"].pk).status == CheckStatus.ACTIVE
    again = assay("checks", "activate", *server(live_server, token), checks["draft"].pk)
    assert again.returncode == 3 and "skipped" in again.stdout

    created = assay("checks", "create", *server(live_server, token), "--container",
                    container.pk, "--type", "between", "--field", "quantity", "--params",
                    '{"min": 5, "max": 1}')
    assert_clean_failure(created, 1, "HTTP 422")

    anomaly = Anomaly.objects.create(container=container, check_rule=checks["quantity"],
                                     failed_count=2, examples=[{"quantity": -1}])
    resolved = assay("anomalies", "resolve", *server(live_server, token), anomaly.pk,
                     "--comment", "fixed in the loader")
    assert resolved.returncode == 0, resolved.stderr
    anomaly.refresh_from_db()
    assert anomaly.status == AnomalyStatus.RESOLVED
    shown = assay("anomalies", "show", *server(live_server, token), anomaly.pk)
    assert '"quantity": -1' in shown.stdout and "fixed in the loader" in shown.stdout
