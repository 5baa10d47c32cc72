"""Helpers for the REST API and CLI tests: token clients and a small catalogue."""

from django.test import Client

from accounts.models import ApiToken
from datastores.models import Check, CheckStatus, Container, Field

ORDER_FIELDS = [
    ("id", "integer"),
    ("customer", "string"),
    ("quantity", "integer"),
    ("status", "string"),
    ("ordered_on", "date"),
]


def token_for(user) -> str:
    _, key = ApiToken.issue(user=user, name=f"{user.username}-test")
    return key


def bearer(user, **client_kwargs) -> Client:
    """A test client that authenticates as ``user`` with a real API token."""
    return Client(HTTP_AUTHORIZATION=f"Bearer {token_for(user)}", **client_kwargs)


def orders_container(datastore, name: str = "orders") -> tuple[Container, dict[str, Check]]:
    """A container with typed fields, four active checks, a draft and an archived one."""
    container = Container.objects.create(datastore=datastore, name=name, kind="table")
    for position, (field, type_) in enumerate(ORDER_FIELDS):
        Field.objects.create(container=container, name=field, type=type_, position=position)
    checks = {
        "unique_id": Check.objects.create(container=container, type="unique", field_name="id"),
        "customer": Check.objects.create(
            container=container, type="not_null", field_name="customer"
        ),
        "quantity": Check.objects.create(
            container=container, type="not_negative", field_name="quantity"
        ),
        "status": Check.objects.create(
            container=container,
            type="expected_values",
            field_name="status",
            params={"values": ["open", "shipped"]},
        ),
        "draft": Check.objects.create(
            container=container,
            type="max_length",
            field_name="customer",
            params={"length": 3},
            status=CheckStatus.DRAFT,
        ),
        "archived": Check.objects.create(
            container=container,
            type="not_null",
            field_name="ordered_on",
            status=CheckStatus.ARCHIVED,
        ),
    }
    return container, checks
