"""Checks of hostile input that every entry point shares (API, forms, services)."""

from typing import Any


def find_nul(value: Any, where: str) -> str | None:
    """Where a NUL character hides in ``value`` (keys included), or None.

    PostgreSQL cannot store NUL in text or JSON: such input is refused up front with a clear
    error instead of failing as a driver error at the first write.
    """
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = find_nul(key, where) or find_nul(item, f"{where}.{key}")
            if found:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = find_nul(item, f"{where}.{index}")
            if found:
                return found
    return None
