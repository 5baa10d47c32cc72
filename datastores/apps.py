from django.apps import AppConfig
from django.core import checks


class DatastoresConfig(AppConfig):
    name = "datastores"

    def ready(self) -> None:
        checks.register(credential_keys_check, checks.Tags.security)


def credential_keys_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Malformed CREDENTIAL_KEYS would only show at the first datastore saved or read."""
    from datastores.credentials import CredentialsUnreadable, fernet

    try:
        fernet()
    except CredentialsUnreadable as exc:
        return [checks.Error(str(exc), id="datastores.E001")]
    return []
