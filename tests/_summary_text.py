"""Text values of a summary JSON, for patient-data checks that must not trip over hex hashes."""

from __future__ import annotations

from typing import Any


def text_values(obj: Any) -> list[str]:
    """Every string value of ``obj`` (nested dicts/lists), without the hex file hashes (keys
    ending in ``sha256``), which may hold any digits by chance."""
    if isinstance(obj, dict):
        return [v for k, x in obj.items() if not k.endswith("sha256") for v in text_values(x)]
    if isinstance(obj, list):
        return [v for x in obj for v in text_values(x)]
    return [obj] if isinstance(obj, str) else []
