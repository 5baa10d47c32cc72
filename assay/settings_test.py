"""Settings for the test suite: the production settings module, fed test-friendly environment.

Each pytest-xdist worker gets its own var/ folder (SQLite file, filesystem broker), so real
worker processes and live servers started by a test share that test's database and queue.
"""

import os
import tempfile
from pathlib import Path

_worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
_default_root = Path(__file__).resolve().parent.parent / "var" / "test"
_root = Path(os.environ.get("ASSAY_TEST_VAR_ROOT", _default_root))
_var = _root / _worker
# xdist workers inherit the environment of the controller process, which imported this module
# first: what it derived for itself must be derived again per worker, or every worker would
# share one var/ folder (filesystem broker) and one Redis database. Values the user set stay.
if os.environ.get("ASSAY_TEST_DERIVED_FOR", _worker) != _worker:
    for _name in os.environ.pop("ASSAY_TEST_DERIVED", "").split(","):
        os.environ.pop(_name, None)
_derived = []


def _default(name: str, value: str) -> None:
    if name not in os.environ:
        os.environ[name] = value
        _derived.append(name)


_default("ASSAY_VAR_DIR", str(_var))
# Tests keep their source databases in pytest's temporary folders; real worker processes
# (which read this from the environment) must accept them too.
_default(
    "DATASTORE_FILE_DIRS",
    ",".join([tempfile.gettempdir(), str(_var / "sources"), str(_var / "demo")]),
)
_default("ASSAY_TEST_DATABASE_NAME", str(_var / "test.sqlite3"))
if os.environ.get("ASSAY_TEST_BROKER") == "redis":
    # One Redis database per xdist worker keeps their queues apart.
    _index = int(_worker[2:]) + 1 if _worker.startswith("gw") else 0
    _redis = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
    _default("CELERY_BROKER_URL", f"{_redis}/{_index % 16}")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
os.environ["ASSAY_TEST_DERIVED_FOR"] = _worker
os.environ["ASSAY_TEST_DERIVED"] = ",".join(
    sorted(set(_derived) | set(filter(None, os.environ.get("ASSAY_TEST_DERIVED", "").split(","))))
)

from assay.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# WhiteNoise serves collected files from here; tests render pages without collecting them.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405
