"""The data-quality engine: checks and profiles by SQL push-down, over any SQLAlchemy dialect.

Pure SQLAlchemy (no Django), shared by the Profile, Scan and External Scan operations and by
the local CLI.
"""

from .checks import (
    CHECK_TYPES,
    CheckDefinitionError,
    CheckResult,
    CheckSpec,
    Evaluation,
    RowDecodeError,
    describe,
    evaluate_rows,
    evaluate_sql,
    fetch_examples,
    high_water_filter,
    json_safe,
    validate_check,
)
from .profiling import (
    FIELD_TYPES,
    FieldProfile,
    InferredCheck,
    TableProfile,
    classify_type,
    infer_checks,
    profile_table,
)

__all__ = [
    "CHECK_TYPES",
    "FIELD_TYPES",
    "CheckDefinitionError",
    "CheckResult",
    "CheckSpec",
    "Evaluation",
    "FieldProfile",
    "InferredCheck",
    "RowDecodeError",
    "TableProfile",
    "classify_type",
    "describe",
    "evaluate_rows",
    "evaluate_sql",
    "fetch_examples",
    "high_water_filter",
    "infer_checks",
    "json_safe",
    "profile_table",
    "validate_check",
]
