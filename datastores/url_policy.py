"""Which datastore URLs Assay connects to: an allowlist of drivers, folders and hosts.

A datastore URL is user input that makes Assay open files and network connections with its own
privileges. Unchecked it reads Assay's own database, creates files anywhere (SQLite URI mode),
and answers "does this file exist?" or "is this port open?". So a URL is *vetted*: when a
datastore is saved, and again right before every connection (settings change, stored rows may
predate them, DNS answers change). Anything not explicitly allowed is refused.

Drivers are a table (``DRIVERS``): adding a dialect is one line naming its rule, a local file
(``FileDriver``) or a database server (``ServerDriver``).

Refusals carry a detail for admins; everyone else gets ``UNIFORM_REFUSAL``, the same words for
every refusal and every failed connection, so the answer says nothing about the server's files
or network.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
import re
import socket
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from django.conf import settings
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

UNIFORM_REFUSAL = (
    "Assay cannot use this datastore URL: it is not allowed here, or the datastore cannot be "
    "reached with it. An admin can see why."
)


class UrlRefused(Exception):
    """A URL Assay will not use. ``detail`` is for admins; ``str()`` is the uniform answer."""

    def __init__(self, detail: str):
        super().__init__(UNIFORM_REFUSAL)
        self.detail = detail


@dataclass(frozen=True)
class VettedUrl:
    url: sa.URL
    # Extra DBAPI connect arguments the vetting decided (e.g. the pinned server address).
    connect_args: dict[str, Any] = field(default_factory=dict)


class DriverRule(Protocol):
    def vet(self, url: sa.URL) -> VettedUrl: ...


# -- files -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileDriver:
    """A database that is one local file: only inside the allowed folders, no URL options.

    Options are refused wholesale: SQLite's URI mode (``file:...?mode=rwc``) creates files
    anywhere and opens other databases; DuckDB reads every option as a setting, some of which
    open files or the network (``enable_external_access``, extension loading, MotherDuck
    tokens). None is needed to read a source. A plain absolute path also rules out DuckDB's
    ``:memory:`` and ``md:``/``motherduck:`` databases.
    """

    def vet(self, url: sa.URL) -> VettedUrl:
        if url.host or url.port or url.username or url.password:
            raise UrlRefused("A file datastore URL has no host, port, user or password.")
        if url.query:
            raise UrlRefused(
                f"URL options are not allowed for {url.get_backend_name()} "
                f"(got {', '.join(sorted(url.query))})."
            )
        raw = url.database or ""
        if not raw or raw == ":memory:":
            raise UrlRefused("The URL names no database file.")
        if raw.startswith("file:") or "\x00" in raw:
            raise UrlRefused("URI filenames are not allowed; give a plain absolute path.")
        path = Path(raw)
        if not path.is_absolute():
            raise UrlRefused("The database file path must be absolute.")
        if ".." in path.parts:
            raise UrlRefused("The database file path must not contain '..'.")
        real = Path(os.path.realpath(path))
        folders = allowed_folders()
        if not any(real.is_relative_to(folder) for folder in folders):
            raise UrlRefused(
                f"{real} is outside the folders datastore files may live in "
                f"({', '.join(map(str, folders)) or 'none configured'}; DATASTORE_FILE_DIRS)."
            )
        if _is_own_database_file(real):
            raise UrlRefused("That file is Assay's own database.")
        # It must exist, for enrichment datastores too: SQLite would create a missing file.
        if not real.is_file():
            raise UrlRefused(f"{real} does not exist or is not a regular file.")
        # Connect to the resolved path: the file vetted is the file opened.
        return VettedUrl(url.set(database=str(real)))


def allowed_folders() -> list[Path]:
    return [Path(os.path.realpath(folder)) for folder in settings.DATASTORE_FILE_DIRS]


def _is_own_database_file(real: Path) -> bool:
    from django.db import connections

    own = connections["default"]
    if own.vendor != "sqlite":
        return False
    own_path = Path(os.path.realpath(own.settings_dict["NAME"]))
    # The journal, WAL and shared-memory files next to it are the same data.
    if real == own_path or (
        real.parent == own_path.parent and real.name.startswith(own_path.name + "-")
    ):
        return True
    try:
        return real.exists() and own_path.exists() and os.path.samefile(real, own_path)
    except OSError:
        return False


# -- servers -----------------------------------------------------------------------------------
LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
# One DNS name: no commas (libpq reads "h1,h2" as several hosts), slashes (a socket folder),
# spaces or anything a driver could read as more than a name.
HOSTNAME = re.compile(rf"(?=.{{1,253}}$){LABEL}(\.{LABEL})*\.?")


@dataclass(frozen=True)
class ServerDriver:
    """A database server reached over TCP: one named host, a port, allowlisted options.

    ``pin_argument`` names the driver's connect argument that makes it use the address that
    was vetted instead of resolving the host again (libpq's ``hostaddr``): a DNS answer that
    changes between the check and the connection cannot redirect it.
    """

    default_port: int
    options: frozenset[str] = frozenset()
    pin_argument: str | None = None

    def vet(self, url: sa.URL) -> VettedUrl:
        host = url.host or ""
        if not host:
            raise UrlRefused("The URL names no host (local sockets are not allowed).")
        if not (HOSTNAME.fullmatch(host) or _ip_literal(host)):
            raise UrlRefused("The host must be one host name or IP address.")
        port = url.port or self.default_port
        if not 0 < port < 65536:
            raise UrlRefused("The port is out of range.")
        unknown = sorted(set(url.query) - self.options)
        if unknown:
            raise UrlRefused(
                f"URL options not allowed: {', '.join(unknown)} "
                f"(allowed: {', '.join(sorted(self.options)) or 'none'})."
            )
        if any(not isinstance(value, str) for value in url.query.values()):
            raise UrlRefused("A URL option is given twice.")
        name = host.rstrip(".").lower()
        if any(_name_denied(name, entry) for entry in denied_names()):
            raise UrlRefused(f"The host {host} is in DATASTORE_DENIED_HOSTS.")
        addresses = resolve(host, port)
        if not addresses:
            raise UrlRefused(f"The host {host} cannot be resolved.")
        for address in addresses:
            if address.is_unspecified:
                raise UrlRefused(f"{host} resolves to the unspecified address {address}.")
            if any(address in network for network in denied_networks()):
                raise UrlRefused(f"{host} resolves to {address}, in DATASTORE_DENIED_HOSTS.")
        if self._is_own_database(url, addresses, port):
            raise UrlRefused("That is Assay's own database.")
        args = {self.pin_argument: str(addresses[0])} if self.pin_argument else {}
        return VettedUrl(url, args)

    def _is_own_database(self, url: sa.URL, addresses: list[IpAddress], port: int) -> bool:
        from django.db import connections

        own = connections["default"]
        if own.vendor != url.get_backend_name():
            return False
        own_settings = own.settings_dict
        own_port = int(own_settings.get("PORT") or self.default_port)
        own_host = own_settings.get("HOST") or ""
        if port != own_port:
            return False
        # The database name the server will use: libpq defaults it to the user name.
        user = url.username or getpass.getuser()
        if (url.database or user) != own_settings["NAME"]:
            return False
        if not own_host or own_host.startswith("/"):  # a local socket: this machine
            own_addresses: list[IpAddress] = []
            own_local = True
        else:
            own_addresses = resolve(own_host, own_port)
            own_local = any(_is_this_machine(a) for a in own_addresses)
        if set(addresses) & set(own_addresses):
            return True
        return own_local and any(_is_this_machine(a) for a in addresses)


def _ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def resolve(host: str, port: int) -> list[IpAddress]:
    """Every address ``host`` resolves to, IPv4-mapped IPv6 ones as IPv4, in resolver order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        return []
    addresses: list[IpAddress] = []
    for info in infos:
        text = str(info[4][0]).split("%")[0]  # drop an IPv6 zone index
        address = ipaddress.ip_address(text)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if address not in addresses:
            addresses.append(address)
    return addresses


def _is_this_machine(address: IpAddress) -> bool:
    """Loopback, or an address of one of this machine's interfaces (it can bind to it)."""
    if address.is_loopback or address.is_unspecified:
        return True
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(address), 0))
    except OSError:
        return False
    return True


def denied_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return _parse_denied(tuple(settings.DATASTORE_DENIED_HOSTS))[0]


def denied_names() -> list[str]:
    return _parse_denied(tuple(settings.DATASTORE_DENIED_HOSTS))[1]


@cache
def _parse_denied(entries: tuple[str, ...]):
    networks, names = [], []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.append(entry.strip().rstrip(".").lower())
    return networks, names


def _name_denied(name: str, entry: str) -> bool:
    # ".example.com" denies every name under example.com; "example.com" only that name.
    if entry.startswith("."):
        return name.endswith(entry) or name == entry[1:]
    return name == entry


# -- the allowlist -----------------------------------------------------------------------------
# One line per dialect+driver Assay knows how to vet. DATASTORE_ALLOWED_DRIVERS picks among
# them (default: every one whose driver is installed).
DRIVERS: dict[str, DriverRule] = {
    "sqlite+pysqlite": FileDriver(),
    # Opened with external access and extension loading off (sources.DUCKDB_LOCKED_CONFIG).
    "duckdb+duckdb_sqlalchemy": FileDriver(),
    "postgresql+psycopg": ServerDriver(
        default_port=5432,
        options=frozenset({"sslmode", "application_name", "connect_timeout"}),
        pin_argument="hostaddr",
    ),
    # MySQL and MariaDB; PyMySQL connects to the ``host`` argument, which pins the address.
    "mysql+pymysql": ServerDriver(
        default_port=3306,
        options=frozenset({"charset", "connect_timeout"}),
        pin_argument="host",
    ),
}


def allowed_drivers() -> list[str]:
    return list(settings.DATASTORE_ALLOWED_DRIVERS) or installed_drivers()


@cache
def installed_drivers() -> tuple[str, ...]:
    names = []
    for name in DRIVERS:
        try:
            make_url(f"{name}://").get_dialect().import_dbapi()
        except (ImportError, NoSuchModuleError, ArgumentError):
            continue
        names.append(name)
    return tuple(names)


def driver_key(url: sa.URL) -> str:
    return f"{url.get_backend_name()}+{url.get_driver_name()}"


def parse(url: str) -> sa.URL:
    """The URL parsed, or UrlRefused. Query ``password`` moves to the password slot, where
    masking and encryption treat it as the secret it is."""
    if not isinstance(url, str) or not url.strip() or "\x00" in url:
        raise UrlRefused("The URL is empty or not text.")
    try:
        parsed = make_url(url.strip())
        parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise UrlRefused(f"Not a usable SQLAlchemy URL ({type(exc).__name__}).") from None
    if "password" in parsed.query:
        password = parsed.query["password"]
        if not isinstance(password, str) or (parsed.password and parsed.password != password):
            raise UrlRefused("The URL gives two passwords.")
        parsed = parsed.difference_update_query(["password"]).set(password=password)
    return parsed


def vet(url: str | sa.URL) -> VettedUrl:
    """The URL if Assay may connect to it, else UrlRefused."""
    parsed = parse(url) if isinstance(url, str) else url
    key = driver_key(parsed)
    allowed = allowed_drivers()
    if key not in allowed:
        raise UrlRefused(
            f"The driver {key} is not allowed (DATASTORE_ALLOWED_DRIVERS: {', '.join(allowed)})."
        )
    rule = DRIVERS.get(key)
    if rule is None:
        raise UrlRefused(f"Assay has no vetting rule for the driver {key}.")
    return rule.vet(parsed)


def message_for(exc: UrlRefused, *, admin: bool) -> str:
    return f"{UNIFORM_REFUSAL.split(':')[0]}: {exc.detail}" if admin else UNIFORM_REFUSAL
