"""The small protocol every operation implements: plan units -> process unit -> finish.

The execution engine (``runs.execution``) owns the lifecycle, fencing, heartbeats and abort;
an operation only says what its units are and what one unit does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from datastores.models import Datastore
    from runs.operations.context import RunContext


# The largest integer a database column (BIGINT) holds: a bigger one would only fail later,
# as a driver error inside a Run.
MAX_INT = 2**63 - 1
# "At most this many rows": a positive count a database can compare with.
RowCount = Annotated[int, Field(gt=0, le=MAX_INT)]
Id = Annotated[int, Field(ge=1, le=MAX_INT)]


class OperationConfig(BaseModel):
    """Base for operation configs: unknown keys are rejected, values are validated.

    Strict: a value must already have its type. ``"yes"`` is not a boolean (a destructive
    ``prune: "yes"`` must not mean True), ``"5"`` is not a number.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @model_validator(mode="after")
    def _integers_fit_a_column(self):
        # A net under every config, also for options that forget their bounds.
        def check(value: Any) -> None:
            if isinstance(value, int) and not isinstance(value, bool):
                if not -MAX_INT - 1 <= value <= MAX_INT:
                    raise ValueError(f"integers must lie between {-MAX_INT - 1} and {MAX_INT}")
            elif isinstance(value, list | tuple):
                for item in value:
                    check(item)

        for name in type(self).model_fields:
            check(getattr(self, name))
        return self


@dataclass(frozen=True)
class Unit:
    """One unit of work: a container name (or a check key for Promote)."""

    name: str
    container_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class UnitResult:
    """What ``process`` read from the source, and how to store it.

    ``save`` runs inside the unit's transaction, together with the RunContainer row and the
    Run's progress. Source queries happen in ``process`` before it, so no write transaction
    on Assay's database is held open while a long source query runs.
    """

    metrics: dict[str, Any] = field(default_factory=dict)
    save: Callable[[], None] | None = None


class UnitFailed(Exception):
    """A container-level failure: recorded on the unit and logged; the Run goes on.

    ``metrics`` still count (e.g. ``{"failed": 1}``), so summaries include failed units.
    """

    def __init__(self, message: str, *, metrics: dict[str, Any] | None = None):
        super().__init__(message)
        self.metrics = dict(metrics or {})


class Operation:
    """Base class; subclasses set the class attributes and implement plan/process/finish."""

    name: ClassVar[str]
    unit_label: ClassVar[str]  # progress label, e.g. "Tables"
    # True: one RunContainer row per unit (Profile, Scan, Promote) that Resume can continue.
    tracks_units: ClassVar[bool] = False
    Config: ClassVar[type[OperationConfig]] = OperationConfig

    def validate(
        self,
        config: OperationConfig,
        *,
        datastore: Datastore,
        destination: Datastore | None,
    ) -> None:
        """Checks that need the catalogue (unknown containers...). Raise InvalidConfig."""

    def plan(self, ctx: RunContext) -> list[Unit]:
        raise NotImplementedError

    def begin(self, ctx: RunContext, units: list[Unit]) -> None:
        """Called once the units are known, for a fresh Run and for a Resume alike (a Resume
        is launched with its units, so ``plan`` does not run again)."""

    def process(self, ctx: RunContext, unit: Unit) -> UnitResult:
        """Do one unit. Raise UnitFailed for a container-level failure."""
        raise NotImplementedError

    def finish(self, ctx: RunContext) -> None:
        """Run-level work after the last unit (pruning, summaries); use ``ctx.fenced()``."""
