"""Promote: check definitions copied between containers of two datastores, check by check."""


import pytest

from accounts.models import Level
from datastores.demo_source import PHONE_PATTERN, generate_demo_source
from datastores.models import Check, CheckStatus, Container
from runs import execution
from runs.errors import InvalidConfig, NotFound, PermissionDenied
from runs.models import LogLevel, Run
from runs.services import run_abort, run_launch, run_resume
from tests.conftest import wait_for
from tests.databases import execute_in_thread, run_now, sync_catalogue
from tests.enrichment_support import execute
from tests.factories import DatastoreFactory, TeamFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_backends]

PROMOTE = {"source_container": "customers", "destination_container": "customers"}


def grant(user, datastore, level: Level) -> None:
    team = TeamFactory(name=f"{user.username}-{datastore.name}", level=level)
    team.members.add(user)
    team.datastores.add(datastore)


@pytest.fixture
def stores(editor, datastore, dbs):
    """``warehouse`` (source) and ``lakehouse`` (destination), both synced demo databases.

    The destination's customers table has no ``phone`` column.
    """
    datastore.source_url = dbs.new("sqlite", "warehouse")
    datastore.save()
    generate_demo_source(datastore.source_url, rows=50)
    lakehouse = DatastoreFactory(name="lakehouse", source_url=dbs.new("sqlite", "lakehouse"))
    generate_demo_source(lakehouse.source_url, rows=50)
    execute(lakehouse.source_url, "ALTER TABLE customers DROP COLUMN phone")
    grant(editor, lakehouse, Level.EDITOR)
    sync_catalogue(editor, datastore)
    sync_catalogue(editor, lakehouse)
    return datastore, lakehouse


def customers(datastore) -> Container:
    return Container.objects.get(datastore=datastore, name="customers")


def add_check(container, type_, field="", status=CheckStatus.ACTIVE, **params) -> Check:
    return Check.objects.create(
        container=container, type=type_, field_name=field, params=params, status=status,
        description=f"{type_} {field}".strip(),
    )  # fmt: skip


@pytest.fixture
def source_checks(stores):
    warehouse, lakehouse = stores
    source, target = customers(warehouse), customers(lakehouse)
    checks = {
        "identical": add_check(source, "not_null", "email"),
        "missing": add_check(source, "unique", "email"),
        "different": add_check(source, "max_length", "first_name", length=40),
        "no_field": add_check(source, "matches_pattern", "phone", CheckStatus.DRAFT,
                              pattern=PHONE_PATTERN),
        "table_level": add_check(source, "row_count_between", status=CheckStatus.DRAFT,
                                 min=1, max=100_000),
        "archived": add_check(source, "not_future", "signed_up_at", CheckStatus.ARCHIVED),
    }
    add_check(target, "not_null", "email")
    add_check(target, "max_length", "first_name", length=30)
    return checks


def destination_checks(lakehouse) -> dict[tuple[str, str], Check]:
    return {(c.type, c.field_name): c for c in customers(lakehouse).checks.all()}


def test_promote_creates_updates_skips_and_fails_per_check(editor, stores, source_checks):
    warehouse, lakehouse = stores

    run = run_launch(user=editor, datastore=warehouse, operation="promote", config=PROMOTE,
                     destination=lakehouse)
    assert run.status == "running" and run.started_at is not None  # never queued
    execution.execute_run(run.pk)
    run.refresh_from_db()

    assert run.status == "success", run.error
    assert run.has_warnings  # the failed check
    assert (run.progress_done, run.progress_total, run.progress_unit) == (5, 5, "Checks")
    assert run.metrics == {"created": 2, "updated": 1, "skipped": 1, "failed": 1}
    units = {u.name: u for u in run.units.all()}
    phone = source_checks["no_field"]
    assert units[f"#{phone.pk} matches_pattern(phone)"].status == "failure"
    assert units[f"#{phone.pk} matches_pattern(phone)"].error == (
        f"Field phone does not exist in destination container customers; "
        f"check #{phone.pk} was not promoted."
    )
    assert sorted(u.status for u in units.values()) == ["failure"] + ["success"] * 4
    warning = run.log_entries.get(level=LogLevel.WARNING)
    assert "Field phone does not exist" in warning.message

    promoted = destination_checks(lakehouse)
    assert set(promoted) == {("not_null", "email"), ("unique", "email"),
                             ("max_length", "first_name"), ("row_count_between", "")}
    assert promoted["unique", "email"].status == "draft"  # as_draft by default
    assert promoted["unique", "email"].origin == "authored"
    assert promoted["row_count_between", ""].params == {"min": 1, "max": 100_000}
    assert promoted["max_length", "first_name"].params == {"length": 40}
    assert promoted["max_length", "first_name"].status == "active"  # its own status is kept
    # The source is untouched.
    assert customers(warehouse).checks.count() == 6

    again = run_now(editor, warehouse, "promote", PROMOTE, destination=lakehouse)
    assert again.metrics == {"created": 0, "updated": 0, "skipped": 4, "failed": 1}
    assert customers(lakehouse).checks.count() == 4


def test_promote_without_as_draft_copies_statuses(editor, stores, source_checks):
    warehouse, lakehouse = stores
    run_now(editor, warehouse, "promote", PROMOTE, destination=lakehouse)
    added = add_check(customers(warehouse), "not_null", "last_name")

    run = run_now(editor, warehouse, "promote", {**PROMOTE, "as_draft": False},
                  destination=lakehouse)

    assert run.status == "success", run.error
    # unique(email) was created as a draft: its status now follows the active source check.
    assert run.metrics == {"created": 1, "updated": 1, "skipped": 3, "failed": 1}
    promoted = destination_checks(lakehouse)
    assert promoted["unique", "email"].status == "active"
    assert promoted["not_null", "last_name"].status == added.status == "active"


def test_promote_only_the_listed_checks(editor, stores, source_checks):
    warehouse, lakehouse = stores
    config = {**PROMOTE, "checks": [source_checks["missing"].pk]}

    run = run_now(editor, warehouse, "promote", config, destination=lakehouse)

    assert run.status == "success", run.error
    assert run.progress_total == 1
    assert run.metrics == {"created": 1, "updated": 0, "skipped": 0, "failed": 0}
    assert ("unique", "email") in destination_checks(lakehouse)


def test_promote_between_containers_of_one_datastore(editor, stores, source_checks):
    warehouse, _ = stores
    config = {"source_container": "customers", "destination_container": "v_order_totals",
              "checks": [source_checks["table_level"].pk]}

    run = run_now(editor, warehouse, "promote", config, destination=warehouse)

    assert run.metrics == {"created": 1, "updated": 0, "skipped": 0, "failed": 0}
    view = Container.objects.get(datastore=warehouse, name="v_order_totals")
    assert view.checks.get().type == "row_count_between"


@pytest.mark.parametrize("destination_level", [Level.VIEWER, Level.AUTHOR])
def test_promote_needs_editor_on_both_datastores(editor, datastore, destination_level):
    lakehouse = DatastoreFactory(name="lakehouse")
    grant(editor, lakehouse, destination_level)
    with pytest.raises(PermissionDenied, match="Editor permission on lakehouse") as caught:
        run_launch(user=editor, datastore=datastore, operation="promote", config=PROMOTE,
                   destination=lakehouse)
    assert caught.value.status_code == 403
    assert not Run.objects.exists()


def test_promote_from_a_datastore_the_user_only_views_is_refused(viewer, datastore):
    lakehouse = DatastoreFactory(name="lakehouse")
    grant(viewer, lakehouse, Level.EDITOR)
    with pytest.raises(PermissionDenied, match="Editor permission on warehouse"):
        run_launch(user=viewer, datastore=datastore, operation="promote", config=PROMOTE,
                   destination=lakehouse)
    with pytest.raises(NotFound):
        run_launch(user=viewer, datastore=DatastoreFactory(name="hidden"),
                   operation="promote", config=PROMOTE, destination=lakehouse)
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"source_container": "nope"}, "source_container: Unknown container on warehouse: nope"),
        ({"destination_container": "nope"},
         "destination_container: Unknown container on lakehouse: nope"),
        ({"checks": "archived"}, "is archived; only active and draft checks are promoted"),
        ({"checks": "foreign"}, "is not a check of customers"),
        ({"checks": []}, "checks"),
        ({"as_draft": "maybe"}, "as_draft"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_promote_config_is_refused_and_nothing_is_stored(
    editor, stores, source_checks, change, message
):
    warehouse, lakehouse = stores
    foreign = add_check(Container.objects.get(datastore=warehouse, name="orders"), "not_null", "id")
    # The parameters name checks made by the fixtures; replace the names with their ids.
    named = {"archived": [source_checks["archived"].pk], "foreign": [foreign.pk]}
    config = {**PROMOTE, **change}
    if isinstance(config.get("checks"), str):
        config["checks"] = named[config["checks"]]
    runs = Run.objects.count()
    with pytest.raises(InvalidConfig, match=message) as caught:
        run_launch(user=editor, datastore=warehouse, operation="promote", config=config,
                   destination=lakehouse)
    assert caught.value.status_code == 422
    assert Run.objects.count() == runs
    assert customers(lakehouse).checks.count() == 2


def test_promote_needs_a_destination_datastore_and_another_container(editor, stores):
    warehouse, _ = stores
    with pytest.raises(InvalidConfig, match="Promote needs a destination datastore"):
        run_launch(user=editor, datastore=warehouse, operation="promote", config=PROMOTE)
    with pytest.raises(InvalidConfig, match="destination is the source container itself"):
        run_launch(user=editor, datastore=warehouse, operation="promote", config=PROMOTE,
                   destination=warehouse)


def test_a_destination_container_gone_before_the_run_starts_fails_it(
    editor, stores, source_checks
):
    warehouse, lakehouse = stores
    run = run_launch(user=editor, datastore=warehouse, operation="promote", config=PROMOTE,
                     destination=lakehouse)
    customers(lakehouse).delete()

    execution.execute_run(run.pk)
    run.refresh_from_db()

    assert run.status == "failure"
    assert run.error == "Container customers is no longer in the destination datastore."


def test_resume_of_an_aborted_promote_processes_only_unfinished_checks(
    editor, datastore, dbs, settings
):
    """300 checks on a 300-column table; abort part-way, then Resume the rest."""
    settings.RUN_ABORT_POLL_INTERVAL = 0.02
    columns = ", ".join(f"c{i} INTEGER" for i in range(300))
    datastore.source_url = dbs.new("sqlite", "warehouse")
    datastore.save()
    lakehouse = DatastoreFactory(name="lakehouse", source_url=dbs.new("sqlite", "lakehouse"))
    grant(editor, lakehouse, Level.EDITOR)
    for store in (datastore, lakehouse):
        execute(store.source_url, f"CREATE TABLE wide ({columns})")
        sync_catalogue(editor, store)
    wide = Container.objects.get(datastore=datastore, name="wide")
    Check.objects.bulk_create(
        Check(container=wide, type="not_null", field_name=f"c{i}") for i in range(300)
    )
    config = {"source_container": "wide", "destination_container": "wide"}
    original = run_launch(user=editor, datastore=datastore, operation="promote", config=config,
                          destination=lakehouse)

    worker = execute_in_thread(original.pk)
    wait_for(lambda: Run.objects.get(pk=original.pk).progress_done >= 5, timeout=30)
    run_abort(run=original, user=editor)
    worker.join(timeout=30)

    original.refresh_from_db()
    assert original.status == "aborted"
    finished = set(original.units.filter(status="success").values_list("name", flat=True))
    unfinished = set(original.units.exclude(status="success").values_list("name", flat=True))
    assert 5 <= len(finished) < 300 and len(finished) + len(unfinished) == 300
    assert original.metrics["created"] == len(finished)

    resumed = run_resume(run=original, user=editor)
    assert resumed.status == "running" and resumed.resumed_from_id == original.pk
    execution.execute_run(resumed.pk)
    resumed.refresh_from_db()

    assert resumed.status == "success", resumed.error
    assert set(resumed.units.values_list("name", flat=True)) == unfinished
    # Every check it touched was still missing: none of the finished ones was read again.
    assert resumed.metrics == {"created": len(unfinished), "updated": 0, "skipped": 0,
                               "failed": 0}
    target = Container.objects.get(datastore=lakehouse, name="wide")
    assert target.checks.count() == 300
    original.refresh_from_db()
    assert original.status == "aborted"  # the original is never touched again


@pytest.mark.worker
def test_promote_on_a_real_worker(editor, stores, source_checks, worker_process):
    warehouse, lakehouse = stores
    worker_process()

    run = run_launch(user=editor, datastore=warehouse, operation="promote", config=PROMOTE,
                     destination=lakehouse)
    run = wait_for(lambda: Run.objects.filter(pk=run.pk, status="success").first(), timeout=60,
                   message="the worker did not finish the Promote")

    assert run.metrics == {"created": 2, "updated": 1, "skipped": 1, "failed": 1}
    assert customers(lakehouse).checks.count() == 4
