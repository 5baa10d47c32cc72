"""Datastores page and the Launch forms built from each operation's Config."""

import re

import pytest

from accounts.models import Level
from datastores.models import Check
from runs.models import Run
from tests.factories import ContainerFactory, DatastoreFactory, TeamFactory
from tests.ui_support import client_for, csrf_token

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]


@pytest.fixture
def containers(datastore):
    return [ContainerFactory(datastore=datastore, name=name)
            for name in ("customers", "orders", "products")]


def launch_url(datastore, operation):
    return f"/datastores/{datastore.pk}/launch/{operation}/"


def errors_of(html: str, field: str) -> list[str]:
    """Error messages rendered inside the given field's block."""
    blocks = [b for b in re.split(r'<(?:div|fieldset) class="field(?=[ "])', html)
              if f'name="{field}"' in b]
    assert len(blocks) == 1, f"no field {field}"
    return re.findall(r'<p class="field-error" role="alert">(.*?)</p>', blocks[0])


# -- datastores page ---------------------------------------------------------------------------
def test_datastores_page(datastore, containers, editor, viewer, outsider):
    secret = DatastoreFactory(name="vault", source_url="postgresql://bob:hunter2@db/vault")
    html = client_for(editor).get("/datastores/").content.decode()
    assert "warehouse" in html and "vault" not in html
    name = f'<th scope="row"><a href="/datastores/{datastore.pk}/">warehouse</a></th>'
    row = html.split(name)[1].split("</tr>")[0]
    assert '<td class="num" data-label="Containers">3</td>' in row
    assert f'href="{launch_url(datastore, "scan")}"' in row
    assert launch_url(datastore, "external_scan") not in row  # opened by the CLI only
    viewer_html = client_for(viewer).get("/datastores/").content.decode()
    assert "warehouse" in viewer_html and "/launch/" not in viewer_html
    assert "warehouse" not in client_for(outsider).get("/datastores/").content.decode()
    team = TeamFactory(name="vaulters", level=Level.VIEWER)
    team.members.add(viewer)
    team.datastores.add(secret)
    vault_html = client_for(viewer).get("/datastores/").content.decode()
    # A Viewer sees the name and the kind, never host, path, user or password.
    vault_row = vault_html.split(f'<a href="/datastores/{secret.pk}/">vault</a></th>')[1]
    vault_row = vault_row.split("</tr>")[0]
    assert "<td data-label=\"Kind\">postgresql</td>" in vault_row and "Editors only" in vault_row
    assert not {"hunter2", "bob", "db/vault"} & set(re.findall(r"[\w/]+", vault_html))
    editor_row = html.split(name)[1].split("</tr>")[0]
    assert "<code>sqlite:///" in editor_row  # Editors see the connection


# -- permissions -------------------------------------------------------------------------------
def test_launch_needs_editor(datastore, containers, viewer, outsider, editor):
    assert client_for(viewer).get(launch_url(datastore, "scan")).status_code == 403
    assert client_for(viewer).post(launch_url(datastore, "scan"), {}).status_code == 403
    assert client_for(outsider).get(launch_url(datastore, "scan")).status_code == 404
    assert client_for(editor).get(launch_url(datastore, "vacuum")).status_code == 404
    assert client_for(editor).get(launch_url(datastore, "external_scan")).status_code == 404
    assert client_for(editor).get("/datastores/999999/launch/scan/").status_code == 404
    assert not Run.objects.exists()


@pytest.mark.parametrize("operation", ["sync", "profile", "scan", "export", "materialize",
                                       "promote"])
def test_every_form_renders(datastore, containers, admin, operation):
    response = client_for(admin).get(launch_url(datastore, operation))
    assert response.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in response.content.decode()


def test_scan_form_fields(datastore, containers, editor):
    html = client_for(editor).get(launch_url(datastore, "scan")).content.decode()
    select = re.search(r'<select name="containers"[^>]*multiple[^>]*>(.*?)</select>', html, re.S)
    assert select
    assert re.findall(r'<option value="([^"]+)"', select.group(1)) == [
        "customers", "orders", "products"]
    assert re.search(r'<input type="checkbox" name="incremental"', html)
    assert re.search(r'<input type="checkbox" name="auto_resolve"[^>]*checked', html)
    limit = re.search(r'<input type="number" name="source_record_limit"[^>]*>', html).group(0)
    assert 'value="10"' in limit and 'min="0"' in limit and 'max="100"' in limit
    assert re.search(r'<input type="number" name="record_limit"[^>]*min="1"', html)


# -- launching ---------------------------------------------------------------------------------
def test_launch_scan_redirects_to_the_new_run(datastore, containers, editor):
    client = client_for(editor, csrf=True)
    token = csrf_token(client, launch_url(datastore, "scan"))
    response = client.post(launch_url(datastore, "scan"), {
        "csrfmiddlewaretoken": token, "containers": ["orders", "products"],
        "incremental": "on", "source_record_limit": "5", "rollup_threshold": "10",
    })
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/activity/runs/{run.pk}/"
    assert (run.operation, run.status, run.triggered_by_user, run.triggered_via) == (
        "scan", "queued", editor, "web")
    assert run.config["containers"] == ["orders", "products"]
    assert run.config["incremental"] is True and run.config["auto_resolve"] is False
    assert run.config["source_record_limit"] == 5 and run.config["record_limit"] is None


def test_launch_without_csrf_is_refused(datastore, containers, editor):
    response = client_for(editor, csrf=True).post(launch_url(datastore, "sync"), {"prune": "on"})
    assert response.status_code == 403
    assert not Run.objects.exists()


def test_empty_container_selection_means_all(datastore, containers, editor):
    client_for(editor).post(launch_url(datastore, "profile"), {"inference_level": "3"})
    run = Run.objects.get()
    assert run.config["containers"] is None and run.config["inference_level"] == 3


def test_form_errors_sit_next_to_their_fields(datastore, containers, editor):
    client = client_for(editor)
    response = client.post(launch_url(datastore, "scan"), {
        "source_record_limit": "500", "containers": ["nope"], "rollup_threshold": "0"})
    html = response.content.decode()
    assert response.status_code == 422
    assert errors_of(html, "source_record_limit") == [
        "Ensure this value is less than or equal to 100."]
    assert errors_of(html, "rollup_threshold") == [
        "Ensure this value is greater than or equal to 1."]
    assert "Select a valid choice" in errors_of(html, "containers")[0]
    assert not Run.objects.exists()


def test_config_errors_from_the_service_sit_next_to_their_fields(datastore, containers, editor):
    # The form accepts an empty "include"; the Sync Config (via run_launch) does not.
    response = client_for(editor).post(launch_url(datastore, "sync"), {"prune": "on"})
    html = response.content.decode()
    assert response.status_code == 422
    assert errors_of(html, "include") == ["List should have at least 1 item after validation, "
                                          "not 0"]
    assert not Run.objects.exists()


def test_promote_form(datastore, containers, editor, viewer):
    destination = DatastoreFactory(name="staging")
    ContainerFactory(datastore=destination, name="orders_copy")
    readonly = DatastoreFactory(name="readonly")
    for store in (destination, readonly):
        team = TeamFactory(name=f"{store.name}-team",
                           level=Level.EDITOR if store == destination else Level.VIEWER)
        team.members.add(editor)
        team.datastores.add(store)
    check = Check.objects.create(container=containers[1], type="not_null", field_name="id")
    client = client_for(editor)
    html = client.get(launch_url(datastore, "promote")).content.decode()
    choices = re.search(r'<select name="destination_datastore"[^>]*>(.*?)</select>', html, re.S)
    assert "staging" in choices.group(1) and "readonly" not in choices.group(1)
    assert '<option value="orders_copy">staging</option>' in html  # destination suggestions

    missing = client.post(launch_url(datastore, "promote"),
                          {"destination_datastore": destination.pk, "checks": "1, x"})
    html = missing.content.decode()
    assert missing.status_code == 422
    assert errors_of(html, "checks") == ["Enter ids separated by commas."]

    response = client.post(launch_url(datastore, "promote"), {
        "destination_datastore": destination.pk, "source_container": "orders",
        "destination_container": "orders_copy", "checks": str(check.pk), "as_draft": "on"})
    run = Run.objects.get()
    assert response["Location"] == f"/activity/runs/{run.pk}/"
    assert run.destination_datastore == destination and run.status == "running"
    assert run.config == {"source_container": "orders", "destination_container": "orders_copy",
                          "checks": [check.pk], "as_draft": True}
