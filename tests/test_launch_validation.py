"""Bad launches are refused before any Run exists: config, destination, permission."""

import pytest

from runs.errors import InvalidConfig, NotFound, PermissionDenied
from runs.models import Run, RunLogEntry, RunStatus, Via
from runs.services import run_launch, validate_config
from tests.factories import DatastoreFactory

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]


def launch_sync(user, datastore, config):
    return run_launch(user=user, datastore=datastore, operation="sync", config=config)


@pytest.mark.parametrize(
    "config,field",
    [
        ({"bogus": True}, "bogus"),
        ({"prune": True, "recreat": True}, "recreat"),
        ({"prune": {"yes": 1}}, "prune"),
        ({"recreate": [True]}, "recreate"),
        ({"include": "table"}, "include"),
        ({"include": []}, "include"),
        ({"include": ["index"]}, "include.0"),
        ({"include": ["table", 7]}, "include.1"),
    ],
)
def test_invalid_sync_config_is_rejected_with_field_errors(editor, datastore, config, field):
    with pytest.raises(InvalidConfig) as exc:
        launch_sync(editor, datastore, config)
    error = exc.value
    assert (error.status_code, error.code) == (422, "invalid_config")
    assert field in error.errors, error.errors
    assert all(isinstance(m, str) and m for m in error.errors[field])
    assert field in error.detail  # the one-line message names the field too
    assert not Run.objects.exists()
    assert not RunLogEntry.objects.exists()


def test_every_bad_field_is_reported_at_once(editor, datastore):
    with pytest.raises(InvalidConfig) as exc:
        launch_sync(editor, datastore, {"prune": "perhaps", "include": [], "extra": 1})
    assert {"prune", "include", "extra"} <= set(exc.value.errors)
    assert not Run.objects.exists()


@pytest.mark.parametrize("config", [[1, 2], "prune", 3])
def test_config_that_is_not_an_object_is_rejected(editor, datastore, config):
    with pytest.raises(InvalidConfig) as exc:
        launch_sync(editor, datastore, config)
    assert "config" in exc.value.errors
    assert not Run.objects.exists()


def test_unknown_operation_is_rejected(editor, datastore):
    with pytest.raises(InvalidConfig) as exc:
        run_launch(user=editor, datastore=datastore, operation="vacuum", config={})
    assert "operation" in exc.value.errors
    assert not Run.objects.exists()


def test_promote_without_destination_is_rejected(editor, datastore):
    with pytest.raises(InvalidConfig) as exc:
        run_launch(user=editor, datastore=datastore, operation="promote", config={})
    assert exc.value.status_code == 422
    assert "destination_datastore" in exc.value.errors
    assert not Run.objects.exists()


def test_promote_to_an_invisible_destination_is_not_found(editor, datastore):
    hidden = DatastoreFactory(name="hidden")
    with pytest.raises(NotFound):
        run_launch(user=editor, datastore=datastore, operation="promote", config={},
                   destination=hidden)
    assert not Run.objects.exists()


@pytest.mark.parametrize("config", [{}, {"bogus": 1}])
def test_viewer_cannot_launch(viewer, datastore, config):
    # Permission is decided before the config is looked at: no hint about valid keys.
    with pytest.raises(PermissionDenied) as exc:
        launch_sync(viewer, datastore, config)
    assert exc.value.status_code == 403
    assert not Run.objects.exists()


@pytest.mark.parametrize("config", [{}, {"bogus": 1}])
def test_outsider_gets_not_found(outsider, datastore, config):
    with pytest.raises(NotFound) as exc:
        launch_sync(outsider, datastore, config)
    assert exc.value.status_code == 404
    assert not Run.objects.exists()


def test_reporter_cannot_launch(reporter, datastore):
    with pytest.raises(PermissionDenied):
        launch_sync(reporter, datastore, {})
    assert not Run.objects.exists()


def test_valid_launch_stores_normalised_config(editor, datastore,
                                               django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        run = run_launch(user=editor, datastore=datastore, operation="sync",
                         config={"prune": True}, via=Via.API)
    assert run.status == RunStatus.QUEUED
    assert run.config == {"prune": True, "recreate": False, "include": ["table", "view"]}
    assert run.triggered_by_user == editor and run.triggered_via == Via.API
    assert run.enqueued_at is not None
    assert list(run.log_entries.values_list("message", flat=True)) == [
        f"Launched by {editor.display_name} via API."
    ]
    assert len(callbacks) == 1


def test_validate_config_alone_accepts_defaults(datastore):
    assert validate_config(operation="sync", config=None, datastore=datastore) == {
        "prune": False, "recreate": False, "include": ["table", "view"],
    }
