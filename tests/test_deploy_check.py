"""`manage.py check --deploy` stays clean with production settings, and production refuses to
start without the keys that encrypt datastore credentials."""

import os
import secrets
import subprocess
import sys

from cryptography.fernet import Fernet

from tests.conftest import ROOT


def check_deploy(tmp_path, **env) -> subprocess.CompletedProcess:
    environment = {
        key: value for key, value in os.environ.items()
        # Nothing the test run set for itself (the browser tests allow async-unsafe calls).
        if not key.startswith(("ASSAY_", "DATASTORE_", "CREDENTIAL_", "DJANGO_"))
        and key != "DATABASE_URL"
    }
    environment.update(DJANGO_SETTINGS_MODULE="assay.settings", ASSAY_MODE="production",
                       ASSAY_VAR_DIR=str(tmp_path), SECRET_KEY=secrets.token_urlsafe(64), **env)
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    result = check_deploy(tmp_path, CREDENTIAL_KEYS=Fernet.generate_key().decode())
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_needs_credential_keys_and_well_formed_ones(tmp_path):
    missing = check_deploy(tmp_path)
    assert missing.returncode != 0 and "CREDENTIAL_KEYS must be set" in missing.stderr
    malformed = check_deploy(tmp_path, CREDENTIAL_KEYS="not-a-key")
    assert malformed.returncode != 0 and "datastores.E001" in malformed.stderr
    assert not (tmp_path / "credential_keys").exists()  # production never invents a key
