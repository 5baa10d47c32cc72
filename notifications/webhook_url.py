"""Which webhook URLs Assay posts to: http(s) only, one named host, not a denied one.

A webhook URL is user input that makes Assay's workers open connections: it is vetted when a
rule is saved and again before every attempt (settings and DNS answers change), with the same
deny-list as datastore URLs (``DATASTORE_DENIED_HOSTS``). Refusals carry a detail for admins;
everyone else gets one uniform answer, so it says nothing about the network.
"""

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

from datastores.url_policy import (
    HOSTNAME,
    UrlRefused,
    _ip_literal,
    _name_denied,
    denied_names,
    denied_networks,
    resolve,
)

UNIFORM_REFUSAL = (
    "Assay cannot post to this webhook URL: it is not allowed here. An admin can see why."
)


class WebhookRefused(UrlRefused):
    def __str__(self) -> str:
        return UNIFORM_REFUSAL


@dataclass(frozen=True)
class Target:
    """Where one attempt connects: the vetted address itself, so a DNS answer that changes
    between vetting and connecting (rebinding) cannot send the request anywhere else. The
    original host goes in the Host header and, for https, in SNI and certificate checks."""

    url: str
    host_header: str
    hostname: str


def vet_webhook_url(url: str) -> str:
    """The URL (stripped) if Assay may post to it; ``WebhookRefused`` otherwise."""
    vetted_target(url)
    return url.strip()


def vetted_target(url: str) -> Target:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise WebhookRefused("The URL cannot be parsed.") from None
    if parts.scheme not in settings.WEBHOOK_ALLOWED_SCHEMES:
        raise WebhookRefused(
            f"Scheme {parts.scheme or '(none)'} is not allowed "
            f"(WEBHOOK_ALLOWED_SCHEMES: {', '.join(settings.WEBHOOK_ALLOWED_SCHEMES)})."
        )
    if parts.username or parts.password:
        raise WebhookRefused("Credentials in the URL are not allowed; the payload is signed.")
    host = parts.hostname or ""
    if not host or not (HOSTNAME.fullmatch(host) or _ip_literal(host)):
        raise WebhookRefused("The URL must name one host.")
    name = host.rstrip(".").lower()
    if any(_name_denied(name, entry) for entry in denied_names()):
        raise WebhookRefused(f"The host {host} is in DATASTORE_DENIED_HOSTS.")
    addresses = resolve(host, port or (443 if parts.scheme == "https" else 80))
    if not addresses:
        raise WebhookRefused(f"The host {host} cannot be resolved.")
    for address in addresses:
        if address.is_unspecified or any(address in net for net in denied_networks()):
            raise WebhookRefused(f"{host} resolves to {address}, in DATASTORE_DENIED_HOSTS.")
    pinned = f"[{addresses[0]}]" if addresses[0].version == 6 else str(addresses[0])
    netloc = pinned if port is None else f"{pinned}:{port}"
    return Target(
        url=urlunsplit(parts._replace(netloc=netloc)),
        host_header=parts.netloc,
        hostname=host,
    )
