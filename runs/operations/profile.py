"""Profile: placeholder until implemented."""

from runs.operations.base import Operation


class Profile(Operation):
    name = "profile"
    unit_label = "Tables"
