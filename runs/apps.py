from django.apps import AppConfig
from django.core import checks


class RunsConfig(AppConfig):
    name = "runs"

    def ready(self) -> None:
        checks.register(retention_operations_known, checks.Tags.compatibility)


def retention_operations_known(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """A misspelt operation in the retention setting would keep its Runs for ever, silently."""
    from django.conf import settings

    from runs.models import Operation

    unknown = sorted(set(settings.RUN_RETENTION_DAYS_BY_OPERATION) - set(Operation.values))
    if not unknown:
        return []
    return [checks.Error(
        f"RUN_RETENTION_DAYS_BY_OPERATION names unknown operations: {', '.join(unknown)}.",
        hint=f"Operations: {', '.join(Operation.values)}.", id="runs.E001",
    )]
