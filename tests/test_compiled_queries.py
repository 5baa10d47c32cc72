"""Queries compiled once per number of ids (assay.compiled), on both backends."""

import pytest

from assay.compiled import rows_for_ids
from runs import fairness
from runs.models import Run
from tests.factories import DatastoreFactory, RunFactory

pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]


def by_ids(ids):
    # An id-like number among the other parameters: it must stay where it is.
    return (Run.objects.filter(pk__in=ids, datastore__run_limit__gte=1)
            .order_by("pk").values_list("pk", "operation", "datastore__name"))


def test_rows_are_the_orms_for_every_id_set():
    store = DatastoreFactory(name="Demo warehouse", run_limit=1)
    runs = [RunFactory(datastore=store, operation=op) for op in ("scan", "sync", "profile")]
    ids = [run.pk for run in runs]
    for chosen in ([ids[0]], [ids[2], ids[0]], ids, [ids[1], ids[1], ids[2]], [987654321]):
        assert rows_for_ids(by_ids, chosen) == list(by_ids(chosen)), chosen
    # The same count of other ids reuses the compiled SQL with the new ids in place.
    assert [row[0] for row in rows_for_ids(by_ids, [ids[1]])] == [ids[1]]


def test_an_id_the_query_does_not_take_once_is_refused():
    with pytest.raises(ValueError, match="exactly once"):
        rows_for_ids(lambda ids: Run.objects.filter(pk=5).values_list("pk"), [1])


def test_wait_reasons_of_repeated_and_reordered_ids():
    store = DatastoreFactory(name="Demo warehouse", run_limit=1)
    first, second, third = (RunFactory(datastore=store, enqueued_at=None) for _ in range(3))
    expected = {first.pk: "waiting for a worker", second.pk: "1st in line for Demo warehouse",
                third.pk: "2nd in line for Demo warehouse"}
    assert fairness.wait_reasons([third.pk, first.pk, second.pk, third.pk]) == expected
    assert fairness.wait_reasons([second.pk]) == {second.pk: expected[second.pk]}
