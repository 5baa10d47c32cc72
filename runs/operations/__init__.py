"""Registry of operations, one module each."""

from functools import cache

from runs.operations.base import Operation


@cache
def operations() -> dict[str, Operation]:
    # Imported lazily: operation modules use models, and this package is imported by models' users.
    from runs.operations.sync import Sync

    return {op.name: op for op in (Sync(),)}


def get_operation(name: str) -> Operation:
    try:
        return operations()[name]
    except KeyError:
        raise LookupError(f"Operation {name!r} is not available") from None
