"""Materialize: placeholder until implemented."""

from runs.operations.base import Operation


class Materialize(Operation):
    name = "materialize"
    unit_label = "Containers"
