"""Export: placeholder until implemented."""

from runs.operations.base import Operation


class Export(Operation):
    name = "export"
    unit_label = "Assets"
