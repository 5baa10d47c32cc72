"""ExternalScan: placeholder until implemented."""

from runs.operations.base import Operation


class ExternalScan(Operation):
    name = "external_scan"
    unit_label = "Containers"
