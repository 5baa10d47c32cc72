from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"

    def ready(self) -> None:
        # Connect the worker's signals: heartbeats, the Run a log line is about.
        from monitoring import log_context, process_signals  # noqa: F401
