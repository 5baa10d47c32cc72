"""Registry of operations, one module each."""

from functools import cache

from runs.operations.base import Operation


@cache
def operations() -> dict[str, Operation]:
    # Imported lazily: operation modules use models, and this package is imported by models' users.
    from runs.operations.export import Export
    from runs.operations.external_scan import ExternalScan
    from runs.operations.materialize import Materialize
    from runs.operations.profile import Profile
    from runs.operations.promote import Promote
    from runs.operations.scan import Scan
    from runs.operations.sync import Sync

    instances = (Sync(), Profile(), Scan(), ExternalScan(), Export(), Materialize(), Promote())
    return {op.name: op for op in instances}


def get_operation(name: str) -> Operation:
    try:
        return operations()[name]
    except KeyError:
        raise LookupError(f"Operation {name!r} is not available") from None
