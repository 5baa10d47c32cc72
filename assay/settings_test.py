"""Settings for the test suite: the production settings module, fed test-friendly environment.

Each pytest-xdist worker gets its own var/ folder (SQLite file, filesystem broker), so real
worker processes and live servers started by a test share that test's database and queue.
"""

import os
from pathlib import Path

_worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
_default_root = Path(__file__).resolve().parent.parent / "var" / "test"
_root = Path(os.environ.get("ASSAY_TEST_VAR_ROOT", _default_root))
_var = _root / _worker
os.environ.setdefault("ASSAY_VAR_DIR", str(_var))
os.environ.setdefault("ASSAY_TEST_DATABASE_NAME", str(_var / "test.sqlite3"))
if os.environ.get("ASSAY_TEST_BROKER") == "redis":
    # One Redis database per xdist worker keeps their queues apart.
    _index = int(_worker[2:]) + 1 if _worker.startswith("gw") else 0
    os.environ.setdefault("CELERY_BROKER_URL", f"redis://127.0.0.1:6379/{_index % 16}")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")

from assay.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
