"""Several actors race to end the same Run; exactly one terminal transition may win.

Racers are the real code paths: a worker finalising success or failure (token-fenced), a
worker acknowledging an abort, a stale worker whose token was replaced, the reaper, and a
user's Abort. They run as threads (one database connection each) and as separate processes,
lined up so that they hit the database together. Whoever wins, the trigger that forbids
UPDATEs of terminal rows must never fire (no racer may see an IntegrityError), and the Run's
log must end with exactly one terminal line.
"""

import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

import tests.conftest as conftest
from accounts.models import User
from datastores.sources import SourceError
from runs.errors import ActionNotAllowed, Unavailable
from runs.execution import RunContext, RunFenced, _fail, _finalise_abort, claim, finish
from runs.models import Run, RunLogEntry, RunStatus
from runs.operations.base import OperationConfig
from runs.reaper import reap
from runs.schedules import fire_due
from runs.services import run_abort, run_resume
from tests.api_support import bearer
from tests.factories import DatastoreFactory, RunFactory
from tests.profile_scan_support import synced_demo_source
from tests.test_run_lifecycle import running_run
from tests.test_truthful_outcomes import aborted_half_way

pytestmark = pytest.mark.postgres

ROUNDS = 50
MAX_JITTER = 0.01  # seconds: about what an Abort spends on its permission check
HOUR = timedelta(hours=1)
TERMINAL_LINE_PREFIXES = ("Finished.", "Run failed", "Aborted by", "Aborted;", "Aborted:")
WON = {"success", "failure", "aborted"}

# scenario -> (racer roles, roles that may win). Roles are defined in ``prepare``.
SCENARIOS = {
    # A worker owns the Run; its heartbeat is stale, so the reaper wants it too.
    "running": (["finish", "fail", "reap", "abort", "stale_finish", "reap"],
                {"finish", "fail", "reap"}),
    # The user asked to abort long ago: the worker acknowledges while the reaper gives up on it.
    "aborting": (["ack_abort", "finish", "reap", "abort", "stale_finish"],
                 {"ack_abort", "finish", "reap"}),
    # Two deliveries of the message race a user's Abort of the queued Run.
    "queued": (["claim_finish", "claim_finish", "abort", "reap"], {"claim_finish", "abort"}),
}
# One set of processes plays both scenarios in alternate rounds (a process start-up costs
# seconds); process p plays PROCESS_ROLES[scenario][p].
PROCESS_ROLES = {
    "running": ["finish", "fail", "reap", "abort"],
    "queued": ["claim_finish", "claim_finish", "abort", "reap"],
}
PROCESSES = 4


# -- the racers --------------------------------------------------------------------------------
def worker_context(run_id: int, token) -> RunContext:
    run = Run.objects.select_related("datastore", "destination_datastore").get(pk=run_id)
    return RunContext(run, token, OperationConfig())


def fenced(move):
    def guarded() -> str:
        try:
            return move()
        except RunFenced:
            return "fenced"

    return guarded


def prepare(role: str, run_id: int, token: str | None, user_id: int):
    """Everything slow happens here, before the start line; returns the racing move."""
    token = uuid.UUID(token) if token else None
    if role in ("finish", "fail", "ack_abort", "stale_finish"):
        ctx = worker_context(run_id, token if role != "stale_finish" else uuid.uuid4())
        return fenced({
            "finish": lambda: finish(ctx),
            "stale_finish": lambda: finish(ctx),
            "fail": lambda: _fail(ctx, SourceError("the source went away")),
            "ack_abort": lambda: _finalise_abort(ctx),
        }[role])
    if role == "claim_finish":
        def claim_and_finish() -> str:
            mine = claim(run_id)
            if mine is None:
                return "not-claimed"
            ctx = worker_context(run_id, mine)
            return fenced(lambda: finish(ctx))()

        return claim_and_finish
    if role == "reap":
        def reaper() -> str:
            done = reap()
            return "failure" if done["lost"] else "aborted" if done["aborted"] else "nothing"

        return reaper
    if role == "abort":
        run = Run.objects.select_related("datastore").get(pk=run_id)
        user = User.objects.get(pk=user_id)

        def abort() -> str:
            try:
                result = run_abort(run=run, user=user)
            except ActionNotAllowed:
                return "too-late"
            except Unavailable:
                # The row was held longer than RUN_LOCK_TIMEOUT by another racer's ending:
                # refused with nothing changed, by design, instead of waiting.
                return "busy"
            return "aborted" if result.status == RunStatus.ABORTED else "flagged"

        return abort
    raise ValueError(role)


def play(move, jitter: float) -> str:
    # A little random head start per racer and round varies who gets there first, so the
    # rounds explore different interleavings instead of replaying the fastest path.
    time.sleep(jitter)
    try:
        return move()
    except Exception as exc:  # reported, and failed on, by the test
        return f"error: {type(exc).__name__}: {exc}"


def race_process(spec_json: str) -> None:
    """Body of one racer process (see PROCESS_SCRIPT): its role in every round, gated by an
    advisory lock that the test releases once all racers wait on it."""
    spec = json.loads(spec_json)
    jitter = random.Random(spec["seed"])
    with connection.cursor() as cursor:
        for i, (run_id, token, role) in enumerate(spec["rounds"]):
            move = prepare(role, run_id, token, spec["user"])
            cursor.execute("SELECT pg_advisory_lock_shared(%s, %s)", [spec["key"], i])
            outcome = play(move, jitter.uniform(0, MAX_JITTER))
            cursor.execute("SELECT pg_advisory_unlock_shared(%s, %s)", [spec["key"], i])
            print(json.dumps({"round": i, "outcome": outcome}), flush=True)
    connection.close()


PROCESS_SCRIPT = (
    "import sys, django; django.setup(); "
    "from tests.test_run_races import race_process; race_process(sys.argv[1])"
)


# -- setting the scene and judging it ---------------------------------------------------------
def make_run(scenario: str, datastore, editor) -> tuple[Run, str | None]:
    now = timezone.now()
    if scenario == "queued":
        return RunFactory(datastore=datastore, enqueued_at=now), None
    token = uuid.uuid4()
    run = RunFactory(
        datastore=datastore, status=RunStatus.RUNNING, worker_token=token, started_at=now,
        enqueued_at=now, progress_total=3, progress_done=1,
        heartbeat_at=now - HOUR if scenario == "running" else now,
        abort_requested_at=now - HOUR if scenario == "aborting" else None,
        abort_requested_by=editor if scenario == "aborting" else None,
    )
    return run, str(token)


def judge(run_id: int, outcomes: list[tuple[str, str]], winners: set[str], editor) -> str:
    """Check one round; return the role that won."""
    errors = [o for _, o in outcomes if o.startswith("error")]
    assert not errors, outcomes  # an IntegrityError here means an UPDATE hit a terminal row
    won = [(role, o) for role, o in outcomes if o in WON]
    assert len(won) == 1, outcomes
    role, outcome = won[0]
    assert role in winners, outcomes
    run = Run.objects.get(pk=run_id)
    assert run.status == outcome, (outcomes, run.status)
    assert run.finished_at is not None
    if outcome == RunStatus.ABORTED:
        assert run.aborted_by_user == editor
    claims = [o for r, o in outcomes if r == "claim_finish" and o != "not-claimed"]
    assert len(claims) <= 1, outcomes
    lines = list(RunLogEntry.objects.filter(run_id=run_id).values_list("message", flat=True))
    terminal = [m for m in lines if m.startswith(TERMINAL_LINE_PREFIXES)]
    assert len(terminal) == 1, (outcomes, lines)
    assert lines[-1] == terminal[0], lines  # nothing is logged after the end
    return role


# -- threads -----------------------------------------------------------------------------------
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_threads_race_to_end_a_run(transactional_db, datastore, editor, scenario):
    roles, winners = SCENARIOS[scenario]
    start = threading.Barrier(len(roles) + 1, timeout=30)
    done = threading.Barrier(len(roles) + 1, timeout=30)
    current: dict = {}
    outcomes: list[list] = [[] for _ in roles]

    def racer(index: int, role: str) -> None:
        jitter = random.Random(index)
        try:
            for _ in range(ROUNDS):
                start.wait()  # the run of this round exists
                move = prepare(role, current["run"], current["token"], editor.pk)
                start.wait()  # everybody is ready: go
                outcomes[index].append(play(move, jitter.uniform(0, MAX_JITTER)))
                done.wait()
        except threading.BrokenBarrierError:
            pass
        finally:
            connection.close()

    threads = [threading.Thread(target=racer, args=(i, r)) for i, r in enumerate(roles)]
    for thread in threads:
        thread.start()
    wins = Counter()
    try:
        for round_ in range(ROUNDS):
            run, token = make_run(scenario, datastore, editor)
            current.update(run=run.pk, token=token)
            start.wait()
            start.wait()
            done.wait()
            wins[judge(run.pk, [(r, outcomes[i][round_]) for i, r in enumerate(roles)],
                       winners, editor)] += 1
    finally:
        for barrier in (start, done):
            barrier.abort()
        for thread in threads:
            thread.join(timeout=30)
    assert sum(wins.values()) == ROUNDS
    print(f"{scenario}: winners over {ROUNDS} rounds: {dict(wins)}")
    # A race that one racer always wins shows nothing about the others' paths.
    assert len(wins) >= 2, wins


# -- processes ---------------------------------------------------------------------------------
def waiting_on(key: int, round_: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s "
            "AND objid = %s AND objsubid = 2 AND NOT granted",
            [key, round_],
        )
        return cursor.fetchone()[0]


def test_processes_race_to_end_a_run(transactional_db, datastore, editor):
    key = 7303
    now = timezone.now()
    rounds = []  # (scenario, run id, token), both scenarios alternating
    for round_ in range(2 * ROUNDS):
        scenario = "running" if round_ % 2 == 0 else "queued"
        # A datastore per round: the Runs of later rounds must not stand ahead of this one in
        # its datastore's line (runs.fairness), or no claim could ever win.
        round_datastore = DatastoreFactory()
        editor.teams.first().datastores.add(round_datastore)
        run, token = make_run(scenario, round_datastore, editor)
        if scenario == "running":
            # Only the Run of the current round may look lost to the reaper.
            Run.objects.filter(pk=run.pk).update(heartbeat_at=now + HOUR)
        rounds.append((scenario, run.pk, token))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "assay.settings",
        "DATABASE_URL": conftest.test_database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "ASSAY_VAR_DIR": str(settings.VAR_DIR),
        "SECRET_KEY": settings.SECRET_KEY,
        "RUN_REQUEUE_AFTER": "3600",
        "LOG_LEVEL": "ERROR",
    }
    with connection.cursor() as cursor:
        for round_ in range(len(rounds)):
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [key, round_])
    procs = []
    for p in range(PROCESSES):
        spec = {"key": key, "user": editor.pk, "seed": p, "rounds": [
            (run_id, token, PROCESS_ROLES[scenario][p]) for scenario, run_id, token in rounds
        ]}
        procs.append(subprocess.Popen(
            [sys.executable, "-c", PROCESS_SCRIPT, json.dumps(spec)],
            cwd=conftest.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        ))
    try:
        for round_, (scenario, run_id, _) in enumerate(rounds):
            conftest.wait_for(lambda r=round_: waiting_on(key, r) == PROCESSES, timeout=60,
                              interval=0.002, message=f"racers did not line up for {round_}")
            if scenario == "running":
                Run.objects.filter(pk=run_id).update(heartbeat_at=now - HOUR)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [key, round_])
        results = [proc.communicate(timeout=60) for proc in procs]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock_all()")
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-3000:]
    outcomes = [[json.loads(line)["outcome"] for line in out.splitlines()] for out, _ in results]
    assert all(len(o) == len(rounds) for o in outcomes)
    wins = {"running": Counter(), "queued": Counter()}
    for i, (scenario, run_id, _) in enumerate(rounds):
        played = [(PROCESS_ROLES[scenario][p], outcomes[p][i]) for p in range(PROCESSES)]
        wins[scenario][judge(run_id, played, SCENARIOS[scenario][1], editor)] += 1
    print(f"processes: winners over {ROUNDS} rounds each: {wins}")
    for scenario, won in wins.items():
        assert len(won) >= 2, (scenario, won)


@pytest.mark.django_db(transaction=True)
def test_concurrent_resumes_make_exactly_one_run(tmp_path, monkeypatch, datastore, editor):
    """8 Resumes of one Run at the same moment: one new Run (a database constraint), seven
    refusals naming it."""
    with synced_demo_source("sqlite", tmp_path, datastore, editor):
        _race_resumes(monkeypatch, datastore, editor)


def _race_resumes(monkeypatch, datastore, editor):
    original = aborted_half_way(monkeypatch, datastore, editor)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def resume():
        try:
            barrier.wait(timeout=10)
            outcomes.append(f"run {run_resume(run=original, user=editor).pk}")
        except ActionNotAllowed as exc:
            outcomes.append(exc.detail)
        finally:
            connection.close()

    threads = [threading.Thread(target=resume) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    [resumed] = Run.objects.filter(resumed_from=original)
    assert sorted(outcomes).count(f"run {resumed.pk}") == 1
    assert len(outcomes) == 8
    assert all(o == f"run {resumed.pk}" or f"resumed as Run #{resumed.pk}" in o
               for o in outcomes), outcomes


@pytest.mark.django_db(transaction=True)
def test_an_abort_never_waits_behind_a_worker_holding_the_run_row(datastore, editor):
    """A worker (here: another session) sits inside a transaction holding its Run's row lock,
    as a frozen worker would: the Abort answers 503 within about RUN_LOCK_TIMEOUT with nothing
    changed, then is accepted once the lock is gone."""
    run, _ = running_run(datastore)
    db = settings.DATABASES["default"]
    holder = psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432,
                             user=db["USER"] or "postgres", dbname=connection.settings_dict["NAME"])
    try:
        holder.execute("SELECT 1 FROM runs_run WHERE id = %s FOR UPDATE", [run.pk])
        client = bearer(editor)
        started = time.monotonic()
        response = client.post(f"/api/v1/runs/{run.pk}/abort")
        answered = time.monotonic() - started
        assert response.status_code == 503, response.content
        body = response.json()
        assert body["code"] == "unavailable"
        assert body["detail"].startswith("The Run is being written by its worker right now")
        assert answered < settings.RUN_LOCK_TIMEOUT + 1.5, answered
        assert Run.objects.get(pk=run.pk).abort_requested_at is None
    finally:
        holder.rollback()
        holder.close()
    response = client.post(f"/api/v1/runs/{run.pk}/abort")
    assert response.status_code == 202 and response.json()["abort_requested"] is True
    lines = RunLogEntry.objects.filter(run_id=run.pk, message__startswith="Abort requested")
    assert lines.count() == 1


@pytest.mark.django_db
def test_housekeeping_passes_leave_the_sessions_lock_timeout_as_they_found_it(datastore):
    """The reaper and the schedules wait briefly for row locks during their pass only: a
    worker keeps its connection for the next task, which must not inherit the limit (a racer
    then failed its advisory-lock wait after 0.5 s)."""
    RunFactory(datastore=datastore, status=RunStatus.RUNNING, worker_token=uuid.uuid4(),
               started_at=timezone.now(), heartbeat_at=timezone.now() - timedelta(hours=1))

    def lock_timeout() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW lock_timeout")
            return cursor.fetchone()[0]

    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '7s'")
    assert reap()["lost"] == 1
    assert lock_timeout() == "7s"
    fire_due()
    assert lock_timeout() == "7s"
