"""Profile end to end: the real engine over the generated demo source, on SQLite and PostgreSQL."""

import pytest

from datastores.demo_source import ORDER_STATUSES
from datastores.models import (
    Anomaly,
    Check,
    CheckOrigin,
    CheckStatus,
    Container,
    Field,
    FieldProfile,
)
from datastores.url_policy import UNIFORM_REFUSAL
from runs.errors import InvalidConfig
from runs.models import LogLevel, Run, RunStatus
from runs.services import run_launch
from tests.conftest import wait_for
from tests.databases import run_now
from tests.profile_scan_support import BACKENDS, execute, synced_demo_source

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.both_backends]

LEVEL_ONE = {"not_null", "not_negative", "expected_values", "not_future"}
LEVEL_TWO = LEVEL_ONE | {"between", "matches_pattern", "unique", "max_length"}


@pytest.fixture(params=BACKENDS)
def source(request, tmp_path, datastore, editor):
    with synced_demo_source(request.param, tmp_path, datastore, editor) as demo:
        yield demo


@pytest.fixture
def sqlite_source(tmp_path, datastore, editor):
    with synced_demo_source("sqlite", tmp_path, datastore, editor) as demo:
        yield demo


def stats(datastore, container: str, field: str) -> dict:
    return FieldProfile.objects.get(
        field__container__datastore=datastore, field__container__name=container, field__name=field
    ).stats


def inferred(datastore, **filters):
    return Check.objects.filter(
        container__datastore=datastore, origin=CheckOrigin.INFERRED, **filters
    )


def test_profile_stores_field_profiles_and_draft_checks(source, datastore, editor):
    run = run_now(editor, datastore, "profile")

    assert run.status == RunStatus.SUCCESS and not run.has_warnings
    tables, defects = source.manifest.tables, source.manifest.defects
    fields = Field.objects.filter(container__datastore=datastore).count()
    checks = inferred(datastore)
    assert run.metrics == {
        "tables_requested": 15,
        "tables_profiled": 15,
        "records_profiled": sum(tables.values()) + tables["orders"],  # the view: one per order
        "field_profiles": fields,
        "checks_added": checks.count(),
        "checks_updated": 0,
    }
    assert FieldProfile.objects.filter(run_id=run.pk).count() == fields

    email = stats(datastore, "customers", "email")
    assert email["nulls"] == defects["customers.email.null"]
    assert email["count"] == tables["customers"] - defects["customers.email.null"]
    assert email["distinct"] == email["count"] - defects["customers.email.duplicate"]
    quantity = stats(datastore, "order_items", "quantity")
    assert quantity["max"] == 5 and (quantity["min"] < 0) == bool(
        defects["order_items.quantity.negative"]
    )
    assert quantity["mean"] is not None and quantity["std_dev"] > 0
    region = stats(datastore, "regions", "name")
    assert region["distinct"] == 6 and len(region["top_values"]) == 6
    assert region["max_length"] == max(len(v) for v, _ in region["top_values"])
    status = stats(datastore, "orders", "status")
    assert set(ORDER_STATUSES) <= {value for value, _ in status["top_values"]}

    # Level 2 (default), drafts (default); inferred from, so true of, the profiled data.
    assert checks.exists()
    assert set(checks.values_list("type", flat=True)) <= LEVEL_TWO
    assert set(checks.values_list("status", flat=True)) == {CheckStatus.DRAFT}
    assert not checks.filter(container__name="customers", field_name="email",
                             type="not_null").exists()
    assert checks.filter(container__name="regions", field_name="id", type="unique").exists()
    between = checks.get(container__name="reviews", field_name="rating", type="between")
    rating = stats(datastore, "reviews", "rating")
    assert between.params == {"min": rating["min"], "max": rating["max"]}
    unit = run.units.get(name="orders")
    assert unit.metrics["records_profiled"] == tables["orders"]
    assert unit.metrics["field_profiles"] == 7
    assert run.log_entries.filter(container="orders", message__startswith="Profiled").exists()


def test_inference_level_decides_which_checks(sqlite_source, datastore, editor):
    containers = ["orders", "regions", "customers"]
    found = {}
    for level in range(6):
        inferred(datastore).delete()
        run = run_now(editor, datastore, "profile", {"containers": containers,
                                                     "inference_level": level})
        found[level] = set(inferred(datastore).values_list("container__name", "type", "field_name"))
        assert run.metrics["checks_added"] == len(found[level])

    def types(level):
        return {type_ for _, type_, _ in found[level]}

    assert found[0] == set()
    assert found[1] and types(1) <= LEVEL_ONE
    assert found[1] < found[2] and types(2) <= LEVEL_TWO
    assert {"between", "unique", "max_length"} <= types(2) - types(1)
    row_counts = {(name, "row_count_between", "") for name in containers}
    assert found[3] == found[2] | row_counts
    assert found[3] == found[4] == found[5]


def test_reprofiling_updates_inferred_checks_in_place(source, datastore, editor):
    first = run_now(editor, datastore, "profile", {"containers": ["order_items", "reviews"]})
    added = first.metrics["checks_added"]
    ids = set(inferred(datastore).values_list("pk", flat=True))
    # A user activates one inferred check; re-profiling must not demote it back to draft.
    Check.objects.filter(container__name="reviews", field_name="rating",
                         type="between").update(status=CheckStatus.ACTIVE)

    same = run_now(editor, datastore, "profile", {"containers": ["order_items", "reviews"]})
    assert (same.metrics["checks_added"], same.metrics["checks_updated"]) == (0, 0)

    execute("UPDATE reviews SET rating = 42 WHERE id = 1", source.url)
    changed = run_now(editor, datastore, "profile", {"containers": ["order_items", "reviews"]})

    assert changed.metrics["checks_added"] == 0 and changed.metrics["checks_updated"] >= 1
    assert set(inferred(datastore).values_list("pk", flat=True)) == ids
    assert inferred(datastore).count() == added
    rating = inferred(datastore).get(container__name="reviews", field_name="rating", type="between")
    assert rating.params["max"] == 42 and rating.status == CheckStatus.ACTIVE
    # One profile per field, replaced each time.
    assert FieldProfile.objects.filter(field__container__name="reviews").count() == 7
    assert set(FieldProfile.objects.values_list("run_id", flat=True)) == {changed.pk}


def test_active_inferred_checks_pass_a_scan_of_the_same_data(sqlite_source, datastore, editor):
    profile = run_now(editor, datastore, "profile", {"inference_level": 3,
                                                     "infer_as_draft": False})
    assert set(inferred(datastore).values_list("status", flat=True)) == {CheckStatus.ACTIVE}

    scan = run_now(editor, datastore, "scan")

    assert scan.status == RunStatus.SUCCESS and not scan.has_warnings
    assert scan.metrics["checks_evaluated"] == profile.metrics["checks_added"]
    assert not Anomaly.objects.exists()


def test_record_limit_profiles_the_first_rows_only(sqlite_source, datastore, editor):
    config = {"containers": ["orders", "regions"], "record_limit": 50, "inference_level": 3}
    run = run_now(editor, datastore, "profile", config)
    assert run.units.get(name="orders").metrics["records_profiled"] == 50
    assert run.units.get(name="regions").metrics["records_profiled"] == 6
    assert stats(datastore, "orders", "id")["count"] == 50
    # A sample's size is not the table's: no row count check from a truncated read.
    assert list(inferred(datastore, type="row_count_between").values_list(
        "container__name", flat=True)) == ["regions"]


def test_computed_container_without_fields_gets_them_from_its_profile(source, datastore, editor):
    Container.objects.create(
        datastore=datastore, name="big_orders", kind="computed",
        query="SELECT order_id, total FROM v_order_totals WHERE total > 100",
    )
    run = run_now(editor, datastore, "profile", {"containers": ["big_orders"]})

    assert run.status == RunStatus.SUCCESS and not run.has_warnings
    names = list(Field.objects.filter(container__name="big_orders").values_list("name", flat=True))
    assert names == ["order_id", "total"]
    assert stats(datastore, "big_orders", "order_id")["count"] == run.metrics["records_profiled"]
    assert run.metrics["records_profiled"] > 0


def test_a_dropped_table_fails_its_container_only(source, datastore, editor):
    execute("DROP TABLE returns", source.url)
    run = run_now(editor, datastore, "profile", {"containers": ["returns", "regions"]})

    assert run.status == RunStatus.SUCCESS and run.has_warnings
    assert dict(run.units.values_list("name", "status")) == {
        "returns": RunStatus.FAILURE, "regions": RunStatus.SUCCESS,
    }
    assert run.log_entries.filter(level=LogLevel.WARNING, container="returns").exists()
    assert run.metrics["tables_profiled"] == 1
    assert not FieldProfile.objects.filter(field__container__name="returns").exists()


def test_an_unreachable_source_fails_the_run(sqlite_source, datastore, editor, tmp_path,
                                             caplog):
    datastore.source_url = f"sqlite:///{tmp_path / 'missing.sqlite3'}"
    datastore.save()
    run = run_now(editor, datastore, "profile")
    assert run.status == RunStatus.FAILURE
    # The Run says the same for every cause; the worker's log says which.
    assert run.error == UNIFORM_REFUSAL
    assert "missing.sqlite3 does not exist" in caplog.text
    assert not run.units.exclude(status=RunStatus.QUEUED).exists()


@pytest.mark.parametrize(
    ("config", "field", "text"),
    [
        ({"containers": ["orders", "nope"]}, "containers", "Unknown containers"),
        ({"inference_level": 9}, "inference_level", "less than or equal to 5"),
        ({"inference_level": -1}, "inference_level", "greater than or equal to 0"),
        ({"record_limit": 0}, "record_limit", "greater than 0"),
        ({"record_limit": "all"}, "record_limit", "valid integer"),
        ({"containers": ["orders", "orders"]}, "containers", "twice"),
        ({"level": 2}, "level", "Extra inputs"),
    ],
)
def test_bad_config_is_refused_before_any_run_exists(sqlite_source, datastore, editor, config,
                                                     field, text):
    before = Run.objects.count()
    with pytest.raises(InvalidConfig) as raised:
        run_launch(user=editor, datastore=datastore, operation="profile", config=config)
    assert field in raised.value.errors
    assert text in str(raised.value.detail)
    assert Run.objects.count() == before


@pytest.mark.worker
def test_profile_in_a_real_worker(sqlite_source, datastore, editor, worker_process):
    worker_process()
    config = {"containers": ["orders", "reviews"], "inference_level": 1}
    run = run_launch(user=editor, datastore=datastore, operation="profile", config=config)
    run = wait_for(
        lambda: Run.objects.filter(pk=run.pk, status=RunStatus.SUCCESS).first(),
        timeout=60, message="the worker did not finish the profile",
    )
    assert run.metrics["tables_profiled"] == 2
    assert run.metrics["records_profiled"] == (
        sqlite_source.manifest.tables["orders"] + sqlite_source.manifest.tables["reviews"]
    )
    assert set(inferred(datastore).values_list("type", flat=True)) <= LEVEL_ONE
    assert FieldProfile.objects.filter(run_id=run.pk).count() == 14
