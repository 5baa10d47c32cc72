"""One launch path: Launch, Resume and Rerun all check the user and the config *now*.

A Run repeated later meets a changed world (an enrichment link removed, a container gone, a
permission lost): the new Run is refused with a clear answer and nothing is created. And a
datastore the caller cannot see never shows, not even whether it exists.
"""

import pytest
from django.utils import timezone

from accounts.models import Level
from runs.models import ActorKind, Run, RunStatus
from tests.api_support import bearer, orders_container
from tests.factories import ContainerFactory, DatastoreFactory, RunFactory
from tests.ui_support import client_for, csrf_token

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]


def ended(datastore, operation, config, status=RunStatus.FAILURE, **fields) -> Run:
    run = RunFactory(datastore=datastore, operation=operation, status=RunStatus.RUNNING,
                     config=config, started_at=timezone.now(), **fields)
    Run.objects.filter(pk=run.pk).update(
        status=status, finished_at=timezone.now(),
        aborted_by_kind=ActorKind.SYSTEM if status == RunStatus.ABORTED else "",
    )
    return Run.objects.get(pk=run.pk)


MATERIALIZE = {"containers": None, "record_limit": None}
SCAN = {"containers": ["orders"], "incremental": False, "record_limit": None,
        "rollup_threshold": 10, "source_record_limit": 10, "auto_resolve": True}


def test_rerun_after_the_enrichment_link_was_removed_is_422(editor, datastore, tmp_path):
    (tmp_path / "enrichment.sqlite3").touch()
    datastore.enrichment_url = f"sqlite:///{tmp_path / 'enrichment.sqlite3'}"
    datastore.save()
    original = ended(datastore, "materialize", MATERIALIZE)
    datastore.enrichment_url = ""
    datastore.save()

    response = bearer(editor).post(f"/api/v1/runs/{original.pk}/rerun")

    assert response.status_code == 422, response.content
    assert response.json()["code"] == "invalid_config"
    assert "no enrichment datastore" in response.json()["detail"]
    assert list(Run.objects.values_list("pk", flat=True)) == [original.pk]


@pytest.mark.parametrize("action", ["resume", "rerun"])
def test_resume_and_rerun_after_the_container_left_the_catalogue_are_422(
    editor, datastore, action
):
    orders_container(datastore)
    original = ended(datastore, "scan", SCAN, status=RunStatus.ABORTED)
    datastore.containers.all().delete()

    response = bearer(editor).post(f"/api/v1/runs/{original.pk}/{action}")

    assert response.status_code == 422, response.content
    assert response.json()["errors"] == {"containers": ["Unknown container: orders"]}
    assert Run.objects.count() == 1


def test_the_browser_shows_the_refusal_and_creates_nothing(editor, datastore):
    orders_container(datastore)
    original = ended(datastore, "scan", SCAN, status=RunStatus.ABORTED)
    datastore.containers.all().delete()
    client = client_for(editor, csrf=True)
    url = f"/activity/runs/{original.pk}/resume/"
    response = client.post(url, {"confirmed": "1", "csrfmiddlewaretoken":
                                 csrf_token(client, url)}, follow=True)
    assert "Unknown container" in response.content.decode()
    assert Run.objects.count() == 1


def test_resume_of_a_promote_whose_destination_container_is_gone_is_422(editor, datastore):
    lakehouse = DatastoreFactory(name="lakehouse")
    lakehouse.teams.add(editor.teams.get())
    orders_container(datastore)
    target = ContainerFactory(datastore=lakehouse, name="orders")
    original = ended(datastore, "promote", {"source_container": "orders",
                                            "destination_container": "orders", "checks": None,
                                            "as_draft": True},
                     destination_datastore=lakehouse)
    target.delete()
    response = bearer(editor).post(f"/api/v1/runs/{original.pk}/resume")
    assert response.status_code == 422
    assert "destination_container" in response.json()["errors"]
    assert Run.objects.count() == 1


def test_rerun_by_someone_who_lost_the_editor_level_is_403(editor, datastore):
    original = ended(datastore, "sync", {"prune": False, "recreate": False,
                                         "include": ["table", "view"]})
    team = editor.teams.get()
    team.level = Level.VIEWER
    team.save()
    assert bearer(editor).post(f"/api/v1/runs/{original.pk}/rerun").status_code == 403
    assert Run.objects.count() == 1


# -- the destination datastore ------------------------------------------------------------------
def launch(user, **body):
    return bearer(user).post("/api/v1/runs", body, content_type="application/json")


def test_a_destination_is_refused_for_anything_but_promote(editor, datastore):
    """Unknown, invisible or visible: the same 422 (nothing tells them apart)."""
    visible = DatastoreFactory(name="visible")
    visible.teams.add(editor.teams.get())
    hidden = DatastoreFactory(name="hidden")
    answers = [launch(editor, operation="sync", datastore=datastore.pk,
                      destination_datastore=target)
               for target in (visible.pk, hidden.pk, 987654321)]
    assert {a.status_code for a in answers} == {422}
    assert len({a.content for a in answers}) == 1
    assert b"hidden" not in answers[1].content
    assert not Run.objects.exists()


def test_an_invisible_destination_answers_like_an_unknown_one(editor, datastore):
    orders_container(datastore)
    hidden = DatastoreFactory(name="hidden")
    ContainerFactory(datastore=hidden, name="orders")
    config = {"source_container": "orders", "destination_container": "orders"}
    invisible = launch(editor, operation="promote", datastore=datastore.pk,
                       destination_datastore=hidden.pk, config=config)
    unknown = launch(editor, operation="promote", datastore=datastore.pk,
                     destination_datastore=987654321, config=config)
    assert invisible.status_code == unknown.status_code == 404
    assert invisible.json() == unknown.json() == {
        "detail": "Destination datastore not found.", "code": "not_found"}
    assert not Run.objects.exists()


def test_activity_does_not_name_a_destination_the_viewer_cannot_see(editor, datastore):
    lakehouse = DatastoreFactory(name="secret-lakehouse")
    original = ended(datastore, "promote", {"source_container": "orders",
                                            "destination_container": "orders", "checks": None,
                                            "as_draft": True},
                     destination_datastore=lakehouse)
    pages = [client_for(editor).get("/activity/").content,
             client_for(editor).get(f"/activity/runs/{original.pk}/").content,
             client_for(editor).get(f"/activity/runs/{original.pk}/more/").content,
             bearer(editor).get(f"/api/v1/runs/{original.pk}").content]
    for page in pages:
        assert b"secret-lakehouse" not in page
    assert b"another datastore" in pages[1]
    lakehouse.teams.add(editor.teams.get())
    assert b"secret-lakehouse" in client_for(editor).get(f"/activity/runs/{original.pk}/").content
