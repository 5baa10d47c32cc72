import re

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from sqlalchemy.engine import make_url

from datastores.credentials import CredentialsUnreadable, decrypt, encrypt


def encrypted_url(column: str, *, dialect_field: str | None = None) -> property:
    """A clear-text attribute over an encrypted column, decrypted on first read only.

    A property (not a field) so that rows load without decrypting anything: lists of Runs
    join their datastore and never need its URL. ``Datastore(source_url=...)`` works too.
    """
    cache = f"_{column}_clear"

    def get(self) -> str:
        token = getattr(self, column)
        cached = self.__dict__.get(cache)
        if cached is None or cached[0] != token:
            cached = (token, decrypt(token))
            self.__dict__[cache] = cached
        return cached[1]

    def set_(self, value: str) -> None:
        value = value or ""
        token = encrypt(value)
        setattr(self, column, token)
        self.__dict__[cache] = (token, value)
        if dialect_field:
            setattr(self, dialect_field, backend_name(value) if value else "")

    return property(get, set_)


DEFAULT_RUN_LIMIT = 4
MAX_RUN_LIMIT = 1000
DEFAULT_CONNECTION_LIMIT = 2
MAX_CONNECTION_LIMIT = 16


class LiveDatastores(models.Manager):
    def get_queryset(self):
        return super().get_queryset().filter(deleted_at__isnull=True)


class Datastore(models.Model):
    """A source database reachable through a SQLAlchemy URL.

    The URLs carry credentials: only their ciphertext is stored (``datastores.credentials``),
    and they are write-only for users. Code that connects reads ``source_url`` /
    ``enrichment_url``; pages and API answers only ever show ``display_url`` (no password) to
    those who may see connection details, and ``dialect`` to everyone else.
    """

    name = models.CharField(max_length=100)
    source_url_encrypted = models.TextField()
    enrichment_url_encrypted = models.TextField(blank=True, default="")
    # The source's kind ("sqlite", "postgresql"), kept in clear: all a Reporter may know of it.
    dialect = models.CharField(max_length=40, blank=True, default="")
    enrichment_prefix = models.CharField(max_length=40, default="assay")
    # Fair sharing: Runs of this datastore running at once; the others wait in line (runs.fairness).
    run_limit = models.PositiveSmallIntegerField(
        default=DEFAULT_RUN_LIMIT,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_RUN_LIMIT)],
    )
    # Source connections one Run may hold at once (a Scan runs a table's statements side by side).
    connection_limit = models.PositiveSmallIntegerField(
        default=DEFAULT_CONNECTION_LIMIT,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_CONNECTION_LIMIT)],
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Set by ``datastore_delete``: the row stays, without credentials, catalogue or grants,
    # so that the Runs on it remain readable audit records naming it.
    deleted_at = models.DateTimeField(null=True, blank=True)

    # The default manager (also behind every related manager) knows only
    # live datastores; a Run reaches its deleted datastore through the base manager.
    all_objects = models.Manager()
    objects = LiveDatastores()

    class Meta:
        ordering = ["name"]
        base_manager_name = "all_objects"
        default_manager_name = "objects"
        constraints = [
            # A deleted datastore's name may be taken again.
            models.UniqueConstraint(
                fields=["name"], condition=Q(deleted_at__isnull=True), name="datastore_name_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    source_url = encrypted_url("source_url_encrypted", dialect_field="dialect")
    enrichment_url = encrypted_url("enrichment_url_encrypted")

    @property
    def display_url(self) -> str:
        return _display(self, "source_url")

    @property
    def display_enrichment_url(self) -> str:
        return _display(self, "enrichment_url")


def _display(datastore: Datastore, attribute: str) -> str:
    try:
        url = getattr(datastore, attribute)
    except CredentialsUnreadable:
        return "(unreadable: see CREDENTIAL_KEYS)"
    return mask_url(url) if url else ""


# Query options whose value is a secret, whatever the driver calls them.
SECRET_OPTION = re.compile(r"pass|secret|token|key|credential", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL without its secrets: the password and any secret-looking option as ``***``."""
    try:
        parsed = make_url(url)
    except Exception:
        return "(invalid URL)"
    masked = {
        key: "***" if SECRET_OPTION.search(key) else value for key, value in parsed.query.items()
    }
    return parsed.set(query=masked).render_as_string(hide_password=True)


def url_without_password(url: str) -> str:
    """The URL to edit: everything but the password (which is write-only), also when it was
    given as a ``password`` option. Unparseable text is returned as it is."""
    if not url:
        return ""
    try:
        parsed = make_url(url)
    except Exception:
        return url
    # URL.set(password=None) means "leave it"; _replace really removes it.
    parsed = parsed.difference_update_query(["password"])._replace(password=None)
    return parsed.render_as_string(hide_password=False)


def backend_name(url: str) -> str:
    try:
        return make_url(url).get_backend_name()
    except Exception:
        return "unknown"


class ContainerKind(models.TextChoices):
    TABLE = "table", "Table"
    VIEW = "view", "View"
    COMPUTED = "computed", "Computed table"


class Container(models.Model):
    datastore = models.ForeignKey(Datastore, on_delete=models.CASCADE, related_name="containers")
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=ContainerKind.choices)
    # Computed tables only: a SELECT over the source, run as a subquery.
    query = models.TextField(blank=True, default="")
    # Incremental scans read only rows whose high_water_column exceeds the stored mark.
    high_water_column = models.CharField(max_length=255, blank=True, default="")
    high_water_mark = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["datastore", "name"]
        constraints = [
            models.UniqueConstraint(fields=["datastore", "name"], name="container_name_unique"),
            models.CheckConstraint(
                condition=Q(kind__in=ContainerKind.values), name="container_kind_valid"
            ),
            models.CheckConstraint(
                condition=~Q(kind=ContainerKind.COMPUTED) | ~Q(query=""),
                name="computed_container_has_query",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.datastore.name}.{self.name}"


class Field(models.Model):
    container = models.ForeignKey(Container, on_delete=models.CASCADE, related_name="fields")
    name = models.CharField(max_length=255)
    type = models.CharField(max_length=32)
    source_type = models.CharField(max_length=100, blank=True, default="")
    nullable = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["container", "position"]
        constraints = [
            models.UniqueConstraint(fields=["container", "name"], name="field_name_unique"),
        ]

    def __str__(self) -> str:
        return self.name


class FieldProfile(models.Model):
    """Latest statistics of one field, replaced by each Profile that reaches it."""

    field = models.OneToOneField(Field, on_delete=models.CASCADE, related_name="profile")
    run_id = models.BigIntegerField(null=True, blank=True)  # plain id: the Run may be deleted
    record_count = models.BigIntegerField(default=0)
    stats = models.JSONField(default=dict)
    profiled_at = models.DateTimeField()


class CopiesDatastore(models.QuerySet):
    """Rows that copy their container's datastore get it filled in, one at a time (``save``)
    or in bulk (one query for all the containers)."""

    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        missing = {o.container_id for o in objs if o.datastore_id is None}
        if missing:
            stores = dict(
                Container.objects.filter(pk__in=missing).values_list("pk", "datastore_id")
            )
            for obj in objs:
                if obj.datastore_id is None:
                    obj.datastore_id = stores.get(obj.container_id)
        return super().bulk_create(objs, *args, **kwargs)


class InContainerDatastore(models.Model):
    """A row of a container that copies the container's datastore (``datastore``), so that
    lists filter and page by datastore on one index instead of joining containers."""

    objects = CopiesDatastore.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if self.datastore_id is None and self.container_id is not None:
            self.datastore_id = (
                Container.objects.filter(pk=self.container_id)
                .values_list("datastore_id", flat=True)
                .first()
            )
        super().save(*args, **kwargs)


class CheckStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    ARCHIVED = "archived", "Archived"


class CheckOrigin(models.TextChoices):
    INFERRED = "inferred", "Inferred"
    AUTHORED = "authored", "Authored"


class Check(InContainerDatastore):
    container = models.ForeignKey(Container, on_delete=models.CASCADE, related_name="checks")
    # The container's datastore, copied (see ``save``): lists filter and page by datastore on
    # one index instead of joining containers.
    datastore = models.ForeignKey(Datastore, on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=32)
    field_name = models.CharField(max_length=255, blank=True, default="")
    params = models.JSONField(default=dict)
    status = models.CharField(
        max_length=16, choices=CheckStatus.choices, default=CheckStatus.ACTIVE
    )
    origin = models.CharField(
        max_length=16, choices=CheckOrigin.choices, default=CheckOrigin.AUTHORED
    )
    description = models.CharField(max_length=255, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["container", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=CheckStatus.values), name="check_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(origin__in=CheckOrigin.values), name="check_origin_valid"
            ),
            # Re-profiling updates an inferred check in place instead of adding a twin.
            models.UniqueConstraint(
                fields=["container", "type", "field_name"],
                condition=Q(origin="inferred"),
                name="inferred_check_unique",
            ),
        ]
        # Keyset pages walk ``id`` backwards inside the filtered set: each list filter leads
        # an index that ends in ``id``.
        indexes = [
            models.Index(fields=["datastore", "status", "id"], name="check_store_status_id"),
            models.Index(fields=["container", "status", "id"], name="check_container_status_id"),
            models.Index(fields=["status", "id"], name="check_status_id"),
        ]

    def __str__(self) -> str:
        return f"{self.type}({self.field_name})" if self.field_name else self.type

    @property
    def label(self) -> str:
        """Type and field only: safe to show at every level (params may hold source values)."""
        return check_label(self.type, self.field_name)


def check_label(type: str, field_name: str) -> str:
    kind = type.replace("_", " ") if type else "rolled-up checks"
    return f"{field_name}: {kind}" if field_name else kind


class CheckEvaluation(models.Model):
    """One check's result in one Scan (or External Scan): how flapping shows."""

    check_rule = models.ForeignKey(Check, on_delete=models.CASCADE, related_name="evaluations")
    run_id = models.BigIntegerField()  # plain id: the Run may be deleted
    # None when the check could not run (``error`` says why).
    failed_count = models.BigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    anomaly = models.ForeignKey(
        "Anomaly", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    evaluated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(failed_count__isnull=True) | Q(failed_count__gte=0),
                name="evaluation_count_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["check_rule", "id"], name="evaluation_check_id"),
            models.Index(fields=["run_id"], name="evaluation_run"),
        ]

    @property
    def passed(self) -> bool:
        return self.failed_count == 0


class AnomalyStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


OPEN_ANOMALY_STATUSES = (AnomalyStatus.ACTIVE, AnomalyStatus.ACKNOWLEDGED)


class Anomaly(InContainerDatastore):
    """A failed check found by a Scan; it outlives the Run that found it.

    One open (active or acknowledged) anomaly per check: a later Scan of the same failing check
    updates it (count, examples, last seen) instead of adding a twin.
    """

    container = models.ForeignKey(Container, on_delete=models.CASCADE, related_name="anomalies")
    # The container's datastore, copied (see ``save``), for the list's filters and paging.
    datastore = models.ForeignKey(Datastore, on_delete=models.CASCADE, related_name="+")
    check_rule = models.ForeignKey(
        Check, null=True, blank=True, on_delete=models.SET_NULL, related_name="anomalies"
    )
    # The check's type when found ("" for a rolled-up anomaly), so the list filters on it
    # without a join.
    check_type = models.CharField(max_length=32, blank=True, default="")
    field_name = models.CharField(max_length=255, blank=True, default="")
    run_id = models.BigIntegerField(null=True, blank=True)  # plain id: the Run may be deleted
    last_run_id = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=AnomalyStatus.choices, default=AnomalyStatus.ACTIVE
    )
    failed_count = models.BigIntegerField()
    examples = models.JSONField(default=list)
    description = models.CharField(max_length=255, blank=True, default="")
    times_seen = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=AnomalyStatus.values), name="anomaly_status_valid"
            ),
            models.CheckConstraint(condition=Q(failed_count__gte=0), name="anomaly_count_valid"),
            models.UniqueConstraint(
                fields=["check_rule"],
                condition=Q(status__in=OPEN_ANOMALY_STATUSES, check_rule__isnull=False),
                name="one_open_anomaly_per_check",
            ),
            # Rolled-up anomalies have no check: one open rollup per container.
            models.UniqueConstraint(
                fields=["container"],
                condition=Q(status__in=OPEN_ANOMALY_STATUSES, check_rule__isnull=True,
                            check_type=""),
                name="one_open_rollup_per_container",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "id"], name="anomaly_status_id"),
            models.Index(fields=["datastore", "status", "id"], name="anomaly_store_status_id"),
            models.Index(fields=["container", "status", "id"], name="anomaly_container_status_id"),
            models.Index(fields=["check_type", "status", "id"], name="anomaly_type_status_id"),
            models.Index(fields=["check_rule", "id"], name="anomaly_check_id"),
            models.Index(fields=["created_at", "id"], name="anomaly_created_id"),
        ]

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_ANOMALY_STATUSES

    @property
    def label(self) -> str:
        """Type and field only: safe to show at every level."""
        return check_label(self.check_type, self.field_name)


class AnomalyEvent(models.Model):
    """One status change of an anomaly: who (a user, or the Run that did it), when, why."""

    anomaly = models.ForeignKey(Anomaly, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=16, blank=True, default="")  # "" when found
    to_status = models.CharField(max_length=16, choices=AnomalyStatus.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150)  # kept when the user is gone
    run_id = models.BigIntegerField(null=True, blank=True)
    comment = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["anomaly", "id"], name="anomaly_event_anomaly_id")]
