from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"

    def ready(self) -> None:
        from monitoring import worker_heartbeat  # noqa: F401 -- connects the worker signals
