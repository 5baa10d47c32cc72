"""Scan: placeholder until implemented."""

from runs.operations.base import Operation


class Scan(Operation):
    name = "scan"
    unit_label = "Tables"
