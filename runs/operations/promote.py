"""Promote: placeholder until implemented."""

from runs.operations.base import Operation


class Promote(Operation):
    name = "promote"
    unit_label = "Checks"
