"""Deterministic demo and benchmark source databases (pure SQLAlchemy, no Django).

``generate_demo_source(url, rows=..., seed=...)`` drops and recreates a small retail schema of
14 related tables plus one view in the database at ``url`` (SQLite and PostgreSQL tested), fills
it with plausible rows from ``random.Random(seed)`` and returns a ``DemoManifest`` with the exact
row count of every table and the exact number of every deliberate defect. Same ``rows`` and
``seed`` give the same data on every dialect. Dates are fixed, never read from the clock: every
regular date lies before ``BASE_TIME`` (2026-01-01), and only the "future" defects use 2099.

Tables (``rows`` = number of orders; dimension tables have fixed sizes):

=========== ============================= =============================================
table       size                          references
=========== ============================= =============================================
regions     6                             -
stores      30 (5 per region)             regions
employees   240 (8 per store)             stores
suppliers   40                            -
categories  12                            -
products    max(50, rows // 20)           categories, suppliers
customers   max(20, rows // 4)            stores (home store)
addresses   1 per customer, 25 % have 2   customers
orders      rows                          customers, stores, employees
order_items 1-4 per order                 orders, products
payments    1 per paid/shipped/delivered  orders
shipments   1 per shipped/delivered       orders
reviews     ~30 % of delivered items      products, customers, order_items
returns     ~3 % of delivered items       order_items
=========== ============================= =============================================

View ``v_order_totals``: one row per order with ``item_count`` and ``total`` (sum of
``quantity * unit_price`` of its items).

Deliberate defects (``DemoManifest.defects`` keys; every other column is clean). Each row draws
its defect independently with the probability in ``DEFECT_RATES``; the manifest counts what was
actually drawn, so it is exact for any ``rows``/``seed``:

================================ ================================================================
key                              rule the defective rows break
================================ ================================================================
customers.email.null             ``email IS NOT NULL``
customers.email.duplicate        ``email`` unique among non-null values; the count is the number
                                 of surplus rows, ``COUNT(email) - COUNT(DISTINCT email)``
customers.phone.pattern          non-null ``phone`` matches ``^\\+?[0-9-]{7,15}$`` (phone is
                                 never null)
addresses.postal_code.null       ``postal_code IS NOT NULL``
products.unit_price.negative     ``unit_price >= 0``
products.sku.too_long            ``LENGTH(sku) <= 12`` (valid SKUs are 11 characters)
orders.ordered_at.future         ``ordered_at <= now`` (defective values are in 2099)
orders.status.unexpected         ``status IN ('pending', 'paid', 'shipped', 'delivered',
                                 'cancelled')`` (case-sensitive; status is never null)
order_items.quantity.negative    ``quantity >= 0`` (valid quantities are 1..5)
reviews.rating.out_of_range      ``rating BETWEEN 1 AND 5``
================================ ================================================================

Columns that legitimately hold nulls: ``shipments.delivered_on`` (not yet delivered).

``generate_bench_table(url, rows=..., table="bench_events")`` builds one wide table entirely
server-side (SQLite recursive CTE, PostgreSQL and DuckDB ``generate_series``, MariaDB/MySQL a
cross join of digits), every value derived from the row number ``n`` (1..rows), so 10^7 rows
take seconds, not minutes. Its columns, the check each
one is made for and its defects (``bench_defect_counts`` gives the exact counts):

============ ============================================== ======================================
column       clean values                                   defect rows (count)
============ ============================================== ======================================
id           n, integer primary key                         -
event_key    n (unique)                                     n % 1000 = 0 repeat n - 1
                                                            (rows // 1000 surplus duplicates)
user_id      n % 50000 + 1 (not_null)                       n % 500 = 0 NULL (rows // 500)
session_id   'sess-<n>' (not_null)                          n % 700 = 0 NULL (rows // 700)
amount       (n % 10000 + 1) / 100, > 0 (not_negative)      n % 997 = 0 negated (rows // 997)
score        n % 101, between 0 and 100                     n % 1009 = 0 in 101..107
                                                            (rows // 1009)
status       'new', 'open', 'closed', 'archived'            n % 2003 = 0 'bogus' (rows // 2003)
code         ``^[A-Z]{3}-[0-9]{4}$``, e.g. 'BEV-0001'       n % 1511 = 0 'bad_<n>' (rows // 1511)
note         'event <n>', length <= 32                      n % 1777 = 0 longer than 32
                                                            (rows // 1777)
occurred_at  updated_at minus 0..599 s, in the past         n % 1999 = 0 in 2099 (rows // 1999)
updated_at   2020-01-01 + n seconds, strictly increasing    - (high-water mark)
============ ============================================== ======================================

row_count_between: the table has exactly ``rows`` rows.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    create_engine,
    text,
)

BASE_TIME = datetime(2026, 1, 1)
FUTURE_YEAR = 2099
BATCH_SIZE = 10_000
VIEW_NAME = "v_order_totals"

# The rules the defects break (module doc), for checks and tests to reuse.
ORDER_STATUSES = ("pending", "paid", "shipped", "delivered", "cancelled")
PHONE_PATTERN = r"^\+?[0-9-]{7,15}$"
SKU_MAX_LENGTH = 12
RATING_RANGE = (1, 5)

# Defect key -> (container, check type, field, params) of the check that catches it: the demo
# seeds these as active checks, so a first Scan finds every defect as an anomaly.
DEMO_CHECKS: dict[str, tuple[str, str, str, dict]] = {
    "customers.email.null": ("customers", "not_null", "email", {}),
    "customers.email.duplicate": ("customers", "unique", "email", {}),
    "customers.phone.pattern": ("customers", "matches_pattern", "phone",
                                {"pattern": PHONE_PATTERN}),
    "addresses.postal_code.null": ("addresses", "not_null", "postal_code", {}),
    "products.unit_price.negative": ("products", "not_negative", "unit_price", {}),
    "products.sku.too_long": ("products", "max_length", "sku", {"length": SKU_MAX_LENGTH}),
    "orders.ordered_at.future": ("orders", "not_future", "ordered_at", {}),
    "orders.status.unexpected": ("orders", "expected_values", "status",
                                 {"values": list(ORDER_STATUSES)}),
    "order_items.quantity.negative": ("order_items", "not_negative", "quantity", {}),
    "reviews.rating.out_of_range": ("reviews", "between", "rating",
                                    {"min": RATING_RANGE[0], "max": RATING_RANGE[1]}),
}

DEFECT_RATES: dict[str, float] = {
    "customers.email.null": 0.02,
    "customers.email.duplicate": 0.01,
    "customers.phone.pattern": 0.02,
    "addresses.postal_code.null": 0.03,
    "products.unit_price.negative": 0.02,
    "products.sku.too_long": 0.02,
    "orders.ordered_at.future": 0.005,
    "orders.status.unexpected": 0.005,
    "order_items.quantity.negative": 0.005,
    "reviews.rating.out_of_range": 0.01,
}

REGIONS = ("North", "South", "East", "West", "Central", "Coastal")
STORES_PER_REGION = 5
EMPLOYEES_PER_STORE = 8
SUPPLIERS = 40
CATEGORIES = (
    "Books", "Music", "Garden", "Kitchen", "Toys", "Sports",
    "Outdoor", "Office", "Beauty", "Grocery", "Tools", "Electronics",
)  # fmt: skip
MIN_PRODUCTS, ORDERS_PER_PRODUCT = 50, 20
MIN_CUSTOMERS, ORDERS_PER_CUSTOMER = 20, 4

FIRST_NAMES = (
    "Ada", "Ben", "Chloe", "Dan", "Eva", "Femi", "Gina", "Hugo", "Ines", "Jonas",
    "Kira", "Liam", "Mona", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sami", "Tara",
)  # fmt: skip
LAST_NAMES = (
    "Adams", "Berg", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ito", "Jensen",
    "Kowalski", "Larsen", "Moreau", "Novak", "Okafor", "Petrov", "Rossi", "Silva", "Tanaka",
    "Weber",
)  # fmt: skip
CITIES = ("Lyon", "Porto", "Leeds", "Graz", "Turku", "Gdansk", "Bergen", "Bilbao", "Ghent", "Brno")
STREETS = ("Main St", "Oak Ave", "Mill Rd", "High St", "Park Ln", "River Rd", "Church St")
COUNTRIES = ("FR", "PT", "GB", "AT", "FI", "PL", "NO", "ES", "BE", "CZ")
DOMAINS = ("example.com", "mail.test", "inbox.test")
ADJECTIVES = ("Classic", "Compact", "Deluxe", "Eco", "Mini", "Pro", "Rustic", "Smart")
NOUNS = ("Lamp", "Kettle", "Backpack", "Notebook", "Drill", "Blender", "Puzzle", "Speaker")
CHANNELS = ("web", "store", "phone")
PAYMENT_METHODS = ("card", "paypal", "bank_transfer", "gift_card")
CARRIERS = ("DHL", "UPS", "GLS", "DPD")
RETURN_REASONS = ("damaged", "wrong item", "not as described", "changed mind")
REVIEW_TITLES = ("Great value", "As expected", "Would buy again", "Disappointing", "Okay")
BAD_PHONES = ("call me", "555.123.4567", "(555) 123-4567", "n/a", "+1 555 0100", "12345")
UNEXPECTED_STATUSES = ("unknown", "on_hold", "refunded", "lost")
BAD_RATINGS = (-1, 0, 6, 7, 10)

# Most orders are delivered: 5 % pending, 10 % paid, 15 % shipped, 65 % delivered, 5 % cancelled.
STATUS_CUM_WEIGHTS = (5, 15, 30, 95, 100)

DEMO_METADATA = MetaData()

regions = Table(
    "regions", DEMO_METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(40), nullable=False),
    Column("code", String(4), nullable=False),
)  # fmt: skip
stores = Table(
    "stores", DEMO_METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("region_id", Integer, ForeignKey("regions.id"), nullable=False),
    Column("name", String(80), nullable=False),
    Column("city", String(60), nullable=False),
    Column("opened_on", Date, nullable=False),
    Column("is_open", Boolean, nullable=False),
)  # fmt: skip
employees = Table(
    "employees", DEMO_METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("store_id", Integer, ForeignKey("stores.id"), nullable=False),
    Column("first_name", String(40), nullable=False),
    Column("last_name", String(40), nullable=False),
    Column("email", String(120), nullable=False),
    Column("hired_on", Date, nullable=False),
    Column("hourly_rate", Numeric(8, 2), nullable=False),
    Column("is_active", Boolean, nullable=False),
)  # fmt: skip
suppliers = Table(
    "suppliers", DEMO_METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(80), nullable=False),
    Column("country", String(2), nullable=False),
    Column("contact_email", String(120), nullable=False),
    Column("rating", Float, nullable=False),
)  # fmt: skip
categories = Table(
    "categories", DEMO_METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", String(40), nullable=False),
    Column("is_active", Boolean, nullable=False),
)  # fmt: skip
products = Table(
    "products", DEMO_METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("category_id", Integer, ForeignKey("categories.id"), nullable=False),
    Column("supplier_id", Integer, ForeignKey("suppliers.id"), nullable=False),
    Column("sku", String(32), nullable=False),
    Column("name", String(120), nullable=False),
    Column("unit_price", Numeric(10, 2), nullable=False),
    Column("weight_kg", Float, nullable=False),
    Column("discontinued", Boolean, nullable=False),
    Column("created_at", DateTime, nullable=False),
)  # fmt: skip
customers = Table(
    "customers", DEMO_METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("home_store_id", Integer, ForeignKey("stores.id"), nullable=False),
    Column("first_name", String(40), nullable=False),
    Column("last_name", String(40), nullable=False),
    Column("email", String(120)),
    Column("phone", String(32), nullable=False),
    Column("birth_date", Date, nullable=False),
    Column("signed_up_at", DateTime, nullable=False),
    Column("is_active", Boolean, nullable=False),
)  # fmt: skip
addresses = Table(
    "addresses", DEMO_METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("line1", String(120), nullable=False),
    Column("city", String(60), nullable=False),
    Column("postal_code", String(10)),
    Column("country", String(2), nullable=False),
)  # fmt: skip
orders = Table(
    "orders", DEMO_METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
    Column("store_id", Integer, ForeignKey("stores.id"), nullable=False),
    Column("employee_id", Integer, ForeignKey("employees.id"), nullable=False),
    Column("channel", String(10), nullable=False),
    Column("status", String(20), nullable=False),
    Column("ordered_at", DateTime, nullable=False),
)  # fmt: skip
order_items = Table(
    "order_items", DEMO_METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("order_id", Integer, ForeignKey("orders.id"), nullable=False),
    Column("product_id", Integer, ForeignKey("products.id"), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", Numeric(10, 2), nullable=False),
    Column("discount", Float, nullable=False),
)  # fmt: skip
payments = Table(
    "payments", DEMO_METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("order_id", Integer, ForeignKey("orders.id"), nullable=False),
    Column("method", String(20), nullable=False),
    Column("amount", Numeric(12, 2), nullable=False),
    Column("paid_at", DateTime, nullable=False),
    Column("succeeded", Boolean, nullable=False),
)  # fmt: skip
shipments = Table(
    "shipments", DEMO_METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("order_id", Integer, ForeignKey("orders.id"), nullable=False),
    Column("carrier", String(20), nullable=False),
    Column("tracking_number", String(24), nullable=False),
    Column("shipped_on", Date, nullable=False),
    Column("delivered_on", Date),
)  # fmt: skip
reviews = Table(
    "reviews", DEMO_METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("product_id", Integer, ForeignKey("products.id"), nullable=False),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False),
    Column("order_item_id", Integer, ForeignKey("order_items.id"), nullable=False),
    Column("rating", Integer, nullable=False),
    Column("title", String(80), nullable=False),
    Column("created_at", DateTime, nullable=False),
)  # fmt: skip
returns = Table(
    "returns", DEMO_METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("order_item_id", Integer, ForeignKey("order_items.id"), nullable=False),
    Column("reason", String(40), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("refund_amount", Numeric(10, 2), nullable=False),
    Column("returned_on", Date, nullable=False),
)  # fmt: skip

VIEW_SQL = f"""
CREATE VIEW {VIEW_NAME} AS
SELECT o.id AS order_id, o.customer_id, o.status, o.ordered_at,
       COUNT(oi.id) AS item_count, SUM(oi.quantity * oi.unit_price) AS total
FROM orders o LEFT JOIN order_items oi ON oi.order_id = o.id
GROUP BY o.id, o.customer_id, o.status, o.ordered_at
"""

Row = dict[str, Any]


@dataclass
class DemoManifest:
    """What ``generate_demo_source`` wrote: rows per table and defects per key (module doc)."""

    tables: dict[str, int]
    defects: dict[str, int]


def generate_demo_source(url: str, *, rows: int = 2000, seed: int = 7) -> DemoManifest:
    """Drop and recreate the demo schema at ``url`` with ``rows`` orders; see the module doc."""
    if rows < 1:
        raise ValueError("rows must be at least 1")
    generator = _DemoRows(random.Random(seed), rows)
    written: Counter[str] = Counter()
    engine = create_engine(url)
    try:
        # One transaction: a commit per batch would cost SQLite a sync each, and PostgreSQL
        # (transactional DDL) keeps the previous data if the run fails half-way.
        with engine.begin() as conn:
            _recreate_schema(conn)
            # DuckDB's driver pays milliseconds per bound value (a seconds-long demo becomes
            # minutes): one multi-row VALUES with the values written into the SQL instead.
            literal = conn.dialect.name == "duckdb"
            for table, batch in _batches(generator.rows()):
                if literal:
                    statement = table.insert().values(batch)
                    conn.exec_driver_sql(
                        str(statement.compile(conn, compile_kwargs={"literal_binds": True}))
                    )
                else:
                    conn.execute(table.insert(), batch)
                written[table.name] += len(batch)
            conn.execute(text(VIEW_SQL))
    finally:
        engine.dispose()
    return DemoManifest(
        tables={name: written[name] for name in DEMO_METADATA.tables},
        defects=dict(generator.defects),
    )


def _recreate_schema(conn: Connection) -> None:
    # The view first: PostgreSQL refuses to drop tables a view still depends on.
    conn.execute(text(f"DROP VIEW IF EXISTS {VIEW_NAME}"))
    DEMO_METADATA.drop_all(conn)
    DEMO_METADATA.create_all(conn)


def _batches(pairs: Iterator[tuple[Table, Row]]) -> Iterator[tuple[Table, list[Row]]]:
    """Group a parent-before-child row stream into per-table batches of at most BATCH_SIZE.

    When any buffer fills, all buffers are flushed in dependency order, so a child row never
    reaches the database before its parent (PostgreSQL checks foreign keys on every insert).
    """
    buffers: dict[Table, list[Row]] = {table: [] for table in DEMO_METADATA.sorted_tables}
    for table, row in pairs:
        buffers[table].append(row)
        if len(buffers[table]) >= BATCH_SIZE:
            yield from _drain(buffers)
    yield from _drain(buffers)


def _drain(buffers: dict[Table, list[Row]]) -> Iterator[tuple[Table, list[Row]]]:
    for table, batch in buffers.items():
        if batch:
            yield table, batch
            buffers[table] = []


class _DemoRows:
    """Streams (table, row) pairs, parents before children, and counts the defects it draws.

    Every random draw comes from one ``random.Random`` in a fixed order, so a seed fixes the data.
    """

    def __init__(self, rng: random.Random, orders: int) -> None:
        self.rng = rng
        self.n_orders = orders
        self.n_products = max(MIN_PRODUCTS, orders // ORDERS_PER_PRODUCT)
        self.n_customers = max(MIN_CUSTOMERS, orders // ORDERS_PER_CUSTOMER)
        self.n_stores = len(REGIONS) * STORES_PER_REGION
        self.defects: dict[str, int] = dict.fromkeys(DEFECT_RATES, 0)
        self.ids: Counter[str] = Counter()  # last id handed out, for tables numbered on the go
        # Order items and payments use the true price, not a defective negative one.
        self.prices: list[float] = []

    def rows(self) -> Iterator[tuple[Table, Row]]:
        yield from self._regions()
        yield from self._stores_and_employees()
        yield from self._suppliers()
        yield from self._categories()
        yield from self._products()
        yield from self._customers_and_addresses()
        yield from self._orders_and_children()

    def _defect(self, key: str) -> bool:
        hit = self.rng.random() < DEFECT_RATES[key]
        self.defects[key] += hit
        return hit

    def _next_id(self, table: Table) -> int:
        self.ids[table.name] += 1
        return self.ids[table.name]

    def _day(self, first: date, last: date) -> date:
        return first + timedelta(days=self.rng.randrange((last - first).days + 1))

    def _moment(self, first: datetime, last: datetime) -> datetime:
        return first + timedelta(seconds=self.rng.randrange(int((last - first).total_seconds())))

    def _regions(self) -> Iterator[tuple[Table, Row]]:
        for id_, name in enumerate(REGIONS, start=1):
            yield regions, {"id": id_, "name": name, "code": name[:3].upper()}

    def _stores_and_employees(self) -> Iterator[tuple[Table, Row]]:
        rng = self.rng
        for store_id in range(1, self.n_stores + 1):
            city = rng.choice(CITIES)
            yield stores, {
                "id": store_id,
                "region_id": (store_id - 1) // STORES_PER_REGION + 1,
                "name": f"{city} #{store_id}",
                "city": city,
                "opened_on": self._day(date(2005, 1, 1), date(2020, 12, 31)),
                "is_open": rng.random() < 0.9,
            }
            for _ in range(EMPLOYEES_PER_STORE):
                employee_id = self._next_id(employees)
                first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
                yield employees, {
                    "id": employee_id,
                    "store_id": store_id,
                    "first_name": first,
                    "last_name": last,
                    "email": f"{first}.{last}.{employee_id}@staff.test".lower(),
                    "hired_on": self._day(date(2010, 1, 1), date(2025, 6, 30)),
                    "hourly_rate": round(rng.uniform(12, 40), 2),
                    "is_active": rng.random() < 0.85,
                }

    def _suppliers(self) -> Iterator[tuple[Table, Row]]:
        for id_ in range(1, SUPPLIERS + 1):
            name = f"{self.rng.choice(LAST_NAMES)} {self.rng.choice(NOUNS)} Supply"
            yield suppliers, {
                "id": id_,
                "name": name,
                "country": self.rng.choice(COUNTRIES),
                "contact_email": f"sales{id_}@supplier.test",
                "rating": round(self.rng.uniform(1, 5), 1),
            }

    def _categories(self) -> Iterator[tuple[Table, Row]]:
        for id_, name in enumerate(CATEGORIES, start=1):
            yield categories, {"id": id_, "name": name, "is_active": id_ % 6 != 0}

    def _products(self) -> Iterator[tuple[Table, Row]]:
        rng = self.rng
        for id_ in range(1, self.n_products + 1):
            price = round(rng.uniform(2, 500), 2)
            self.prices.append(price)
            sku = f"SKU-{id_:07d}"
            yield products, {
                "id": id_,
                "category_id": rng.randint(1, len(CATEGORIES)),
                "supplier_id": rng.randint(1, SUPPLIERS),
                "sku": f"{sku}-LEGACY" if self._defect("products.sku.too_long") else sku,
                "name": f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}",
                "unit_price": -price if self._defect("products.unit_price.negative") else price,
                "weight_kg": round(rng.uniform(0.1, 25), 3),
                "discontinued": rng.random() < 0.05,
                "created_at": self._moment(datetime(2018, 1, 1), datetime(2023, 12, 31)),
            }

    def _customers_and_addresses(self) -> Iterator[tuple[Table, Row]]:
        rng = self.rng
        last_email: str | None = None
        for id_ in range(1, self.n_customers + 1):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            # The id makes every regular email unique, so each copy adds exactly one duplicate.
            if self._defect("customers.email.null"):
                email = None
            elif last_email is not None and self._defect("customers.email.duplicate"):
                email = last_email
            else:
                email = last_email = f"{first}.{last}.{id_}@{rng.choice(DOMAINS)}".lower()
            yield customers, {
                "id": id_,
                "home_store_id": rng.randint(1, self.n_stores),
                "first_name": first,
                "last_name": last,
                "email": email,
                "phone": self._phone(),
                "birth_date": self._day(date(1950, 1, 1), date(2005, 12, 31)),
                "signed_up_at": self._moment(datetime(2019, 1, 1), datetime(2023, 12, 31)),
                "is_active": rng.random() < 0.9,
            }
            for kind in ("billing", "shipping") if rng.random() < 0.25 else ("billing",):
                null_postal_code = self._defect("addresses.postal_code.null")
                yield addresses, {
                    "id": self._next_id(addresses),
                    "customer_id": id_,
                    "kind": kind,
                    "line1": f"{rng.randint(1, 250)} {rng.choice(STREETS)}",
                    "city": rng.choice(CITIES),
                    "postal_code": None if null_postal_code else f"{rng.randint(10000, 99999)}",
                    "country": rng.choice(COUNTRIES),
                }

    def _phone(self) -> str:
        rng = self.rng
        if self._defect("customers.phone.pattern"):
            return rng.choice(BAD_PHONES)
        # At most 15 characters after the "+", as PHONE_PATTERN allows.
        return (
            f"+{rng.randint(1, 99)}-{rng.randint(200, 999)}"
            f"-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
        )

    def _orders_and_children(self) -> Iterator[tuple[Table, Row]]:
        rng = self.rng
        # Last order 30 days before BASE_TIME so shipments, reviews and returns stay in the past.
        first_order, last_order = BASE_TIME - timedelta(days=730), BASE_TIME - timedelta(days=30)
        for order_id in range(1, self.n_orders + 1):
            customer_id = rng.randint(1, self.n_customers)
            store_id = rng.randint(1, self.n_stores)
            status = rng.choices(ORDER_STATUSES, cum_weights=STATUS_CUM_WEIGHTS)[0]
            ordered_at = self._moment(first_order, last_order)
            stored_status = status
            if self._defect("orders.status.unexpected"):
                stored_status = rng.choice(UNEXPECTED_STATUSES)
            stored_ordered_at = ordered_at
            if self._defect("orders.ordered_at.future"):
                stored_ordered_at = self._moment(
                    datetime(FUTURE_YEAR, 1, 1), datetime(FUTURE_YEAR, 12, 31)
                )
            yield orders, {
                "id": order_id,
                "customer_id": customer_id,
                "store_id": store_id,
                "employee_id": (store_id - 1) * EMPLOYEES_PER_STORE
                + rng.randint(1, EMPLOYEES_PER_STORE),
                "channel": rng.choice(CHANNELS),
                "status": stored_status,
                "ordered_at": stored_ordered_at,
            }
            # Children follow the true status and date; the defects stay in the orders columns.
            items = [self._item(order_id) for _ in range(rng.randint(1, 4))]
            for item in items:
                yield order_items, item.row
            if status in ("paid", "shipped", "delivered"):
                yield payments, self._payment(order_id, ordered_at, items)
            if status in ("shipped", "delivered"):
                shipment = self._shipment(order_id, ordered_at, delivered=status == "delivered")
                yield shipments, shipment
                if shipment["delivered_on"] is not None:
                    yield from self._reviews_and_returns(
                        customer_id, items, shipment["delivered_on"]
                    )

    def _item(self, order_id: int) -> _Item:
        rng = self.rng
        product_id = rng.randint(1, self.n_products)
        quantity = rng.randint(1, 5)
        negative = self._defect("order_items.quantity.negative")
        row = {
            "id": self._next_id(order_items),
            "order_id": order_id,
            "product_id": product_id,
            "quantity": -rng.randint(1, 3) if negative else quantity,
            "unit_price": self.prices[product_id - 1],
            "discount": rng.choice((0.0, 0.0, 0.05, 0.1, 0.2)),
        }
        return _Item(row, quantity)

    def _payment(self, order_id: int, ordered_at: datetime, items: list[_Item]) -> Row:
        total = sum(i.quantity * i.row["unit_price"] * (1 - i.row["discount"]) for i in items)
        return {
            "id": self._next_id(payments),
            "order_id": order_id,
            "method": self.rng.choice(PAYMENT_METHODS),
            "amount": round(total, 2),
            "paid_at": ordered_at + timedelta(minutes=self.rng.randint(1, 600)),
            "succeeded": True,
        }

    def _shipment(self, order_id: int, ordered_at: datetime, *, delivered: bool) -> Row:
        rng = self.rng
        carrier = rng.choice(CARRIERS)
        shipped_on = ordered_at.date() + timedelta(days=rng.randint(1, 7))
        delivered_on = shipped_on + timedelta(days=rng.randint(1, 7))
        return {
            "id": self._next_id(shipments),
            "order_id": order_id,
            "carrier": carrier,
            "tracking_number": f"{carrier}{rng.randrange(10**12):012d}",
            "shipped_on": shipped_on,
            "delivered_on": delivered_on if delivered else None,
        }

    def _reviews_and_returns(
        self, customer_id: int, items: list[_Item], delivered_on: date
    ) -> Iterator[tuple[Table, Row]]:
        rng = self.rng
        delivered_at = datetime.combine(delivered_on, datetime.min.time())
        for item in items:
            if rng.random() < 0.3:
                rating = rng.randint(*RATING_RANGE)
                if self._defect("reviews.rating.out_of_range"):
                    rating = rng.choice(BAD_RATINGS)
                yield reviews, {
                    "id": self._next_id(reviews),
                    "product_id": item.row["product_id"],
                    "customer_id": customer_id,
                    "order_item_id": item.row["id"],
                    "rating": rating,
                    "title": rng.choice(REVIEW_TITLES),
                    "created_at": delivered_at + timedelta(minutes=rng.randint(60, 14 * 24 * 60)),
                }
            if rng.random() < 0.03:
                returned = rng.randint(1, item.quantity)
                yield returns, {
                    "id": self._next_id(returns),
                    "order_item_id": item.row["id"],
                    "reason": rng.choice(RETURN_REASONS),
                    "quantity": returned,
                    "refund_amount": round(returned * item.row["unit_price"], 2),
                    "returned_on": delivered_on + timedelta(days=rng.randint(1, 14)),
                }


class _Item(NamedTuple):
    row: Row
    quantity: int  # the true quantity, which the row may replace with a negative defect


BENCH_BASE = "2020-01-01 00:00:00"
BENCH_FUTURE_BASE = "2099-01-01 00:00:00"
BENCH_STATUSES = ("new", "open", "closed", "archived")
BENCH_CODE_PATTERN = r"^[A-Z]{3}-[0-9]{4}$"
BENCH_NOTE_MAX_LENGTH = 32
BENCH_SCORE_RANGE = (0, 100)

# Column -> (defect rule, every how many rows it occurs); see the module doc.
BENCH_DEFECT_PERIODS: dict[str, tuple[str, int]] = {
    "event_key": ("duplicate", 1000),
    "user_id": ("null", 500),
    "session_id": ("null", 700),
    "amount": ("negative", 997),
    "score": ("out_of_range", 1009),
    "status": ("unexpected", 2003),
    "code": ("pattern", 1511),
    "note": ("too_long", 1777),
    "occurred_at": ("future", 1999),
}


def bench_defect_counts(rows: int, table: str = "bench_events") -> dict[str, int]:
    """Exact defect counts of ``generate_bench_table(url, rows=rows, table=table)``."""
    return {
        f"{table}.{column}.{rule}": rows // period
        for column, (rule, period) in BENCH_DEFECT_PERIODS.items()
    }


def generate_bench_table(url: str, *, rows: int, table: str = "bench_events") -> None:
    """Drop and recreate one wide table of ``rows`` rows, generated inside the database."""
    if rows < 1:
        raise ValueError("rows must be at least 1")
    metadata = MetaData()
    bench = _bench_table(metadata, table)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            metadata.drop_all(conn)
            metadata.create_all(conn)
            if conn.dialect.name == "mysql":  # the SQL below joins text with || (ANSI)
                conn.execute(text("SET SESSION sql_mode = CONCAT(@@sql_mode, ',PIPES_AS_CONCAT')"))
            conn.execute(text(_bench_insert_sql(conn, bench, rows)), {"rows": rows})
    finally:
        engine.dispose()


def _bench_table(metadata: MetaData, name: str) -> Table:
    return Table(
        name, metadata,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("event_key", BigInteger, nullable=False),
        Column("user_id", Integer),
        Column("session_id", String(36)),
        Column("amount", Numeric(12, 2), nullable=False),
        Column("score", Integer, nullable=False),
        Column("status", String(16), nullable=False),
        Column("code", String(16), nullable=False),
        Column("note", String(80), nullable=False),
        Column("occurred_at", DateTime, nullable=False),
        Column("updated_at", DateTime, nullable=False),
    )  # fmt: skip


def _bench_insert_sql(conn: Connection, bench: Table, rows: int) -> str:
    """INSERT ... SELECT over the row numbers 1..:rows, in the connection's dialect."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        source = (
            "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :rows) "
        )
        from_clause = "FROM seq"
    elif dialect in ("postgresql", "duckdb"):
        source = ""
        from_clause = "FROM generate_series(1, :rows) AS seq(n)"
    elif dialect == "mysql":
        # No series function, and recursion is capped by server settings: the numbers are a
        # cross join of one ten-row table of digits per decimal place.
        places = len(str(max(rows - 1, 1)))
        digits = " UNION ALL ".join(f"SELECT {d} AS d" for d in range(10))
        number = " + ".join(f"d{place}.d * {10**place}" for place in range(places))
        joined = ", ".join(f"({digits}) AS d{place}" for place in range(places))
        source = ""
        from_clause = f"FROM (SELECT 1 + {number} AS n FROM {joined}) AS seq WHERE n <= :rows"
    else:
        raise ValueError(f"generate_bench_table does not support {dialect}")
    period = {column: every for column, (_, every) in BENCH_DEFECT_PERIODS.items()}
    statuses = " ".join(f"WHEN {i} THEN '{s}'" for i, s in enumerate(BENCH_STATUSES))
    updated_at = _timestamp_plus_seconds(dialect, BENCH_BASE, "n")
    values = {
        "id": "n",
        "event_key": f"CASE WHEN n % {period['event_key']} = 0 THEN n - 1 ELSE n END",
        "user_id": f"CASE WHEN n % {period['user_id']} = 0 THEN NULL ELSE n % 50000 + 1 END",
        "session_id": f"CASE WHEN n % {period['session_id']} = 0 THEN NULL "
        "ELSE 'sess-' || CAST(n AS VARCHAR(12)) END",
        "amount": f"CASE WHEN n % {period['amount']} = 0 THEN -1 ELSE 1 END "
        "* (n % 10000 + 1) / 100.0",
        "score": f"CASE WHEN n % {period['score']} = 0 THEN 101 + n % 7 ELSE n % 101 END",
        "status": f"CASE WHEN n % {period['status']} = 0 THEN 'bogus' "
        f"ELSE CASE n % {len(BENCH_STATUSES)} {statuses} END END",
        # 'BEV-0001': a letter picked by n, 'EV-', then n % 10000 zero-padded to four digits.
        "code": f"CASE WHEN n % {period['code']} = 0 THEN 'bad_' || CAST(n AS VARCHAR(12)) "
        "ELSE substr('ABCDEFGHIJKLMNOPQRSTUVWXYZ', n % 26 + 1, 1) || 'EV-' "
        "|| substr(CAST(10000 + n % 10000 AS VARCHAR(6)), 2) END",
        "note": f"CASE WHEN n % {period['note']} = 0 "
        "THEN 'event ' || CAST(n AS VARCHAR(12)) || ' carries a note longer than allowed' "
        "ELSE 'event ' || CAST(n AS VARCHAR(12)) END",
        "occurred_at": f"CASE WHEN n % {period['occurred_at']} = 0 "
        f"THEN {_timestamp_plus_seconds(dialect, BENCH_FUTURE_BASE, 'n')} "
        f"ELSE {_timestamp_plus_seconds(dialect, BENCH_BASE, 'n - n % 600')} END",
        "updated_at": updated_at,
    }
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(column) for column in values)
    return (
        f"{source}INSERT INTO {quote(bench.name)} ({columns}) "
        f"SELECT {', '.join(values.values())} {from_clause}"
    )


def _timestamp_plus_seconds(dialect: str, base: str, seconds: str) -> str:
    if dialect == "sqlite":
        # SQLAlchemy stores SQLite DateTime as 'YYYY-MM-DD HH:MM:SS.ffffff'; using the same text
        # keeps string comparisons against bound datetimes (high-water marks) correct.
        return f"datetime('{base}', ({seconds}) || ' seconds') || '.000000'"
    if dialect == "mysql":
        return f"TIMESTAMP '{base}' + INTERVAL ({seconds}) SECOND"
    return f"TIMESTAMP '{base}' + ({seconds}) * INTERVAL '1 second'"
