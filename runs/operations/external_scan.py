"""External Scan: results of a scan executed outside Assay, registered through the API.

No worker ever executes this operation. ``runs.external_scan`` opens the Run directly in
``running``, records each container's results as they are posted, and closes it; this module
only declares the operation and validates its configuration.
"""

from pydantic import Field as ConfigField

from runs.errors import InvalidConfig
from runs.operations.base import Operation, OperationConfig


class ExternalScanConfig(OperationConfig):
    # The containers the caller announces; results for others are refused. None: any.
    containers: list[str] | None = ConfigField(default=None, min_length=1, max_length=1000)
    # Free text naming where the scan ran (pipeline, host, file...), shown with the Run.
    source: str = ConfigField(default="", max_length=500)


class ExternalScan(Operation):
    name = "external_scan"
    unit_label = "Containers"
    tracks_units = True
    Config = ExternalScanConfig

    def validate(self, config: ExternalScanConfig, *, datastore, destination) -> None:
        if config.containers is None:
            return
        if len(set(config.containers)) != len(config.containers):
            raise InvalidConfig(
                "containers lists a container twice.",
                errors={"containers": ["Duplicate container names."]},
            )
        known = set(
            datastore.containers.filter(name__in=config.containers).values_list("name", flat=True)
        )
        unknown = [name for name in config.containers if name not in known]
        if unknown:
            raise InvalidConfig(
                f"Unknown containers on {datastore.name}: {', '.join(unknown)}.",
                errors={"containers": [f"Unknown container: {name}" for name in unknown]},
            )
