# Sourced by scripts/run and scripts/test: find Python 3.12+, create .venv, install Assay.
# Idempotent: reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

find_python() {
    local candidates=("${PYTHON:-}" python3.13 python3.12)
    if command -v pyenv >/dev/null 2>&1; then
        local root
        root=$(pyenv root)
        candidates+=("$root"/versions/3.13*/bin/python3 "$root"/versions/3.12*/bin/python3)
    fi
    candidates+=(python3)
    for py in "${candidates[@]}"; do
        [ -n "$py" ] || continue
        if command -v "$py" >/dev/null 2>&1 &&
            "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
            command -v "$py"
            return 0
        fi
    done
    echo "Assay needs Python 3.12 or newer (set PYTHON=/path/to/python3.12)." >&2
    return 1
}

bootstrap() {
    local extras="$1"
    if [ ! -x .venv/bin/python ]; then
        "$(find_python)" -m venv .venv
    fi
    local stamp=".venv/.assay-installed-$extras"
    local digest
    digest=$(sha256sum pyproject.toml | cut -c1-16)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
        .venv/bin/python -m pip install --quiet --upgrade pip
        .venv/bin/python -m pip install --quiet -e ".$extras"
        echo "$digest" >"$stamp"
    fi
}
