from django.conf import settings
from django.db import models
from django.db.models import Q


class Operation(models.TextChoices):
    SYNC = "sync", "Sync"
    PROFILE = "profile", "Profile"
    SCAN = "scan", "Scan"
    EXTERNAL_SCAN = "external_scan", "External Scan"
    EXPORT = "export", "Export"
    MATERIALIZE = "materialize", "Materialize"
    PROMOTE = "promote", "Promote"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    ABORTED = "aborted", "Aborted"


ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
TERMINAL_STATUSES = (RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.ABORTED)


class ActorKind(models.TextChoices):
    USER = "user", "User"
    SCHEDULE = "schedule", "Schedule"
    SYSTEM = "system", "System"


class Via(models.TextChoices):
    WEB = "web", "Web"
    API = "api", "API"
    SCHEDULE = "schedule", "Schedule"


# What a few Runs name besides their datastore, trigger and schedule (see ``for_list``).
REFERENCES = ("aborted_by_user", "abort_requested_by", "destination_datastore")


class RunQuerySet(models.QuerySet):
    def for_list(self, *, prefetch: bool = True):
        # Joined: what every row names. Prefetched (one small query each, none when no row
        # has one): what few rows name. Six joins cost PostgreSQL more to plan than the
        # keyset page costs to run. Pages of rows load those instead with
        # ``runs.selectors.load_references`` (fewer queries).
        rows = self.select_related("datastore", "triggered_by_user", "schedule")
        if prefetch:
            rows = rows.prefetch_related(*REFERENCES)
        return rows

    def active(self):
        return self.filter(status__in=ACTIVE_STATUSES)

    def visible_to(self, user):
        from accounts.permissions import visible_datastore_ids

        ids = visible_datastore_ids(user)
        return self if ids is None else self.filter(datastore_id__in=ids)


class Run(models.Model):
    """One execution of an operation. Rows in a terminal status are immutable (DB trigger)."""

    operation = models.CharField(max_length=16, choices=Operation.choices)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    # PROTECT: Runs are audit records. A datastore is deleted by ``datastore_delete``, which
    # keeps its row (marked deleted) so that its Runs, and other datastores' Promote Runs
    # into it, still show its name.
    datastore = models.ForeignKey(
        "datastores.Datastore", on_delete=models.PROTECT, related_name="runs"
    )
    # Promote only: where checks are copied to.
    destination_datastore = models.ForeignKey(
        "datastores.Datastore", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    config = models.JSONField(default=dict)

    triggered_by_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    # Users are deactivated, not deleted, once they have Runs: the audit record names them.
    triggered_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    triggered_via = models.CharField(max_length=16, choices=Via.choices)
    schedule = models.ForeignKey(
        "runs.Schedule", null=True, blank=True, on_delete=models.DO_NOTHING,
        db_constraint=False, related_name="runs",
    )

    abort_requested_at = models.DateTimeField(null=True, blank=True)
    abort_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    aborted_by_kind = models.CharField(max_length=16, choices=ActorKind.choices, blank=True)
    aborted_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    worker_token = models.UUIDField(null=True, blank=True)
    # How many times the execute message was sent: re-sends back off with it.
    send_count = models.PositiveSmallIntegerField(db_default=0)

    progress_done = models.PositiveIntegerField(default=0)
    # Units among progress_done that failed: the outcome and what a Resume has left to do.
    progress_failed = models.PositiveIntegerField(db_default=0)
    progress_total = models.PositiveIntegerField(null=True, blank=True)
    progress_unit = models.CharField(max_length=24, blank=True, default="")
    metrics = models.JSONField(default=dict)
    has_warnings = models.BooleanField(default=False)
    log_lines = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")

    # Plain references without FK constraints: deleting the original must not UPDATE the
    # (immutable) Runs that point to it, and the audit trail keeps the id either way.
    resumed_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False,
        related_name="+",
    )
    rerun_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False,
        related_name="+",
    )

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=RunStatus.values), name="run_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(operation__in=Operation.values), name="run_operation_valid"
            ),
            models.CheckConstraint(
                condition=Q(triggered_by_kind__in=ActorKind.values), name="run_trigger_kind_valid"
            ),
            # finished_at is set exactly when the Run is terminal.
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running"], finished_at__isnull=True)
                | Q(status__in=["success", "failure", "aborted"], finished_at__isnull=False),
                name="run_finished_iff_terminal",
            ),
            models.CheckConstraint(
                condition=~Q(status="aborted") | ~Q(aborted_by_kind=""),
                name="run_aborted_has_actor",
            ),
            models.CheckConstraint(
                condition=~Q(operation="promote") | Q(destination_datastore__isnull=False),
                name="run_promote_has_destination",
            ),
            # A Run is resumed at most once: concurrent Resumes create exactly one new Run.
            models.UniqueConstraint(
                fields=["resumed_from"], condition=Q(resumed_from__isnull=False),
                name="run_resumed_once",
            ),
        ]
        indexes = [
            # Activity filters are keyset-paginated on id within each of these.
            models.Index(fields=["datastore", "-id"], name="run_datastore_id"),
            models.Index(fields=["status", "-id"], name="run_status_id"),
            models.Index(fields=["operation", "-id"], name="run_operation_id"),
            # The Activity heatmap counts Runs per day over 12 weeks (~230k rows at 10^6 Runs a
            # year) under the same filters as the list: with every filtered column (and id, which
            # it counts) in the index, that count is an index-only scan, about half the time of
            # an index scan that visits the table. Key columns rather than INCLUDE, which SQLite
            # lacks. (created_at keeps its own index: dropping it would make SQLite rebuild the
            # table, and with it lose the immutability triggers.)
            models.Index(
                fields=["created_at", "datastore", "status", "operation", "triggered_by_kind",
                        "id"],
                name="run_created_heatmap",
            ),
            # The Run list under the "by" and schedule filters, and the heatmap's count of
            # their Runs for viewers off UTC with other filters too (RunActorDayCount has no
            # hours, only quarter-of-day totals):
            # actor first, then the same columns as run_created_heatmap, an index-only scan
            # instead of intersecting the actor's and the time range's bitmaps and visiting the
            # table. Partial: Runs without that actor stay out of it, and out of its write cost.
            models.Index(
                fields=["triggered_by_user", "created_at", "datastore", "status", "operation",
                        "triggered_by_kind", "id"],
                condition=Q(triggered_by_user__isnull=False),
                name="run_by_user_created",
            ),
            models.Index(
                fields=["schedule", "created_at", "datastore", "status", "operation",
                        "triggered_by_kind", "id"],
                condition=Q(schedule__isnull=False),
                name="run_by_schedule_created",
            ),
            # Fair sharing (runs.fairness) counts a datastore's running Runs and its line.
            models.Index(
                fields=["datastore", "id"],
                condition=Q(status__in=["queued", "running"]),
                name="run_active_datastore_id",
            ),
            # The reaper scans only active Runs.
            models.Index(
                fields=["status", "heartbeat_at"],
                condition=Q(status__in=["queued", "running"]),
                name="run_active_heartbeat",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_operation_display()}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def units_remaining(self) -> int | None:
        """Units a Resume would do again (failed or never done); None: never planned."""
        if self.progress_total is None:
            return None
        return self.progress_total - self.progress_done + self.progress_failed

    @property
    def is_aborting(self) -> bool:
        return self.status == RunStatus.RUNNING and self.abort_requested_at is not None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        from django.utils import timezone

        end = self.finished_at or timezone.now()
        return max((end - self.started_at).total_seconds(), 0.0)

    @property
    def triggered_by_name(self) -> str:
        if self.triggered_by_kind == ActorKind.USER and self.triggered_by_user:
            return self.triggered_by_user.display_name
        if self.triggered_by_kind == ActorKind.SCHEDULE:
            schedule = self.schedule_or_none
            if schedule is not None:
                return schedule.name
            return f"Schedule #{self.schedule_id} (deleted)" if self.schedule_id else "Schedule"
        return "System"

    @property
    def schedule_or_none(self):
        """The schedule that launched it, or None once that schedule was deleted (the Run
        keeps its id: no FK constraint)."""
        if not self.schedule_id:
            return None
        try:
            return self.schedule
        except Schedule.DoesNotExist:
            return None

    @property
    def aborted_by_name(self) -> str:
        if not self.aborted_by_kind:
            return ""
        if self.aborted_by_kind == ActorKind.USER and self.aborted_by_user:
            return self.aborted_by_user.display_name
        return "System"


class RunContainer(models.Model):
    """Per-unit progress of a Run: a container, or a check for Promote."""

    # Deleted by a database trigger after their Run: rows of a finished Run may be touched by
    # nothing else, so Django must not delete them before the Run (migration 0005).
    run = models.ForeignKey(Run, on_delete=models.DO_NOTHING, related_name="units")
    name = models.CharField(max_length=255)
    container = models.ForeignKey(
        "datastores.Container", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    metrics = models.JSONField(default=dict)
    error = models.TextField(blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "name"], name="run_unit_unique"),
            models.CheckConstraint(
                condition=Q(status__in=RunStatus.values), name="run_unit_status_valid"
            ),
        ]

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return max((self.finished_at - self.started_at).total_seconds(), 0.0)


class LogLevel(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"


class RunLogEntry(models.Model):
    """One log line. Readers page with ``id > cursor``; ids only grow."""

    # Deleted with their Run by a database trigger, as units are.
    run = models.ForeignKey(Run, on_delete=models.DO_NOTHING, related_name="log_entries")
    container = models.CharField(max_length=255, blank=True, default="")
    level = models.CharField(max_length=8, choices=LogLevel.choices, default=LogLevel.INFO)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["run", "id"], name="run_log_cursor")]


class RunDeletion(models.Model):
    """Audit event: who deleted which Run, with a snapshot of what it was."""

    run_id = models.BigIntegerField(db_index=True)
    operation = models.CharField(max_length=16, choices=Operation.choices)
    status = models.CharField(max_length=16, choices=RunStatus.choices)
    datastore_id = models.BigIntegerField(null=True)
    datastore_name = models.CharField(max_length=100)
    deleted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    deleted_by_name = models.CharField(max_length=150)
    deleted_at = models.DateTimeField(auto_now_add=True)
    snapshot = models.JSONField(default=dict)

    class Meta:
        ordering = ["-id"]


class Schedule(models.Model):
    """A cron expression (UTC); each firing launches a Run triggered by this schedule."""

    name = models.CharField(max_length=100)
    datastore = models.ForeignKey(
        "datastores.Datastore", on_delete=models.CASCADE, related_name="schedules"
    )
    destination_datastore = models.ForeignKey(
        "datastores.Datastore", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    operation = models.CharField(max_length=16, choices=Operation.choices)
    cron = models.CharField(max_length=100)
    config = models.JSONField(default=dict)
    enabled = models.BooleanField(default=True)
    # Why the schedule turned itself off (its owner lost the right to launch); shown to users.
    disabled_reason = models.CharField(max_length=500, blank=True, default="")
    # The owner: every firing launches as this user, checked at that moment.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_fired_at = models.DateTimeField(null=True, blank=True)
    next_fire_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(operation__in=Operation.values) & ~Q(operation="external_scan"),
                name="schedule_operation_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class FiringOutcome(models.TextChoices):
    LAUNCHED = "launched", "Launched"
    SKIPPED = "skipped", "Skipped"  # refused: the owner may no longer launch it
    FAILED = "failed", "Failed"  # the configuration no longer validates, or an error


class ScheduleFiring(models.Model):
    """What one due firing of a schedule did: no firing is silently lost."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="firings")
    due_at = models.DateTimeField()
    fired_at = models.DateTimeField(auto_now_add=True)
    outcome = models.CharField(max_length=16, choices=FiringOutcome.choices)
    reason = models.TextField(blank=True, default="")
    run_id = models.BigIntegerField(null=True, blank=True)  # plain id: the Run may be deleted

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome__in=FiringOutcome.values), name="firing_outcome_valid"
            ),
            models.CheckConstraint(
                condition=Q(outcome="launched", run_id__isnull=False)
                | (~Q(outcome="launched") & Q(run_id__isnull=True) & ~Q(reason="")),
                name="firing_launched_iff_run",
            ),
        ]
        indexes = [models.Index(fields=["schedule", "-id"], name="firing_schedule_id")]


def hour_count_column(operation: str, status: str, kind: str) -> str:
    return f"n_{operation}_{status}_{kind}"


class RunCounts(models.Model):
    """Finished Runs of one datastore in one period, by operation, final status and trigger kind.

    Written only by database triggers on runs_run (see runs.rollup), read by the heatmap.
    """

    datastore = models.ForeignKey(
        "datastores.Datastore", on_delete=models.DO_NOTHING, db_constraint=False,
        db_index=False, related_name="+",  # the unique (period, datastore) index serves
    )
    n = models.IntegerField(default=0)  # every column's sum
    # One count per (operation, final status, trigger kind), e.g. ``n_scan_failure_schedule``.
    for _operation in Operation.values:
        for _status in TERMINAL_STATUSES:
            for _kind in ActorKind.values:
                locals()[hour_count_column(_operation, _status, _kind)] = models.IntegerField(
                    default=0
                )
    del _operation, _status, _kind

    class Meta:
        abstract = True


class RunHourCount(RunCounts):
    hour = models.DateTimeField()  # start of the UTC hour the Runs were created in

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hour", "datastore"], name="run_hour_count_unique")
        ]


class RunQuarterCount(RunCounts):
    """The same per quarter of an hour: where a viewer's midnight is at :15, :30 or :45."""

    quarter = models.DateTimeField()  # start of the UTC quarter hour

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["quarter", "datastore"], name="run_quarter_count_unique"
            )
        ]


QUARTERS_OF_DAY = 96


def quarter_of_day_column(index: int) -> str:
    """The RunDayCount and RunActorDayCount column of the ``index``-th quarter hour of the UTC
    day (0 = 00:00)."""
    return f"q{index:02d}"


class RunDayCount(RunCounts):
    """The same per UTC day: a UTC day's 20-odd rows instead of its 24 hours' 500.

    Also each quarter hour's total (``q00`` .. ``q95``): a viewer whose midnight is not UTC's
    reads the part of a UTC day before their midnight from the same row, where the hour and
    quarter rows would be 8 more rows per day and datastore (for +5:30). Totals only: with
    other filters the part comes from the hour and quarter rows.
    """

    day = models.DateField()
    for _index in range(QUARTERS_OF_DAY):
        locals()[quarter_of_day_column(_index)] = models.IntegerField(default=0)
    del _index

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "datastore"], name="run_day_count_unique")
        ]


class RunActorDayCount(RunCounts):
    """The same per UTC day, datastore and actor: who launched the Runs, for the heatmap's
    "by" and schedule filters. One row per user (or schedule) that launched Runs on that day
    and datastore, a few dozen per day, where the Runs themselves are ~30,000 a day at 10^7 a
    year. Only days: an hour row per actor would be as many rows as there are Runs.

    Also each quarter hour's total (``q00`` .. ``q95``), as on RunDayCount: a viewer whose
    midnight is not UTC's reads the parts of days from the same rows. Totals only: with other
    filters too, that viewer counts the actor's Runs (activity.selectors).
    """

    day = models.DateField()
    for _index in range(QUARTERS_OF_DAY):
        locals()[quarter_of_day_column(_index)] = models.IntegerField(default=0)
    del _index
    # The Run's triggered_by_user_id, 0 for none; the Run's schedule_id when a schedule
    # launched it (triggered_by_kind "schedule"), else 0. Not foreign keys: 0 is not a row,
    # and the key of a deleted schedule is still what its Runs are filtered by.
    user_key = models.BigIntegerField()
    schedule_key = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "datastore", "user_key", "schedule_key"],
                name="run_actor_day_count_unique",
            )
        ]
        indexes = [
            models.Index(fields=["user_key", "day"], name="run_actor_day_user",
                         condition=~Q(user_key=0)),
            models.Index(fields=["schedule_key", "day"], name="run_actor_day_schedule",
                         condition=~Q(schedule_key=0)),
        ]
