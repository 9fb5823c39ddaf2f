"""Adapter layouts: file names inside a platform folder, with defaults a user may override in params."""
from __future__ import annotations

import difflib

from transrec.errors import TransrecError


def resolve_layout(adapter: str, defaults: dict, given: dict | None) -> dict:
    """The adapter's defaults overridden by params `layout`; an unknown key is one clear error."""
    given = given or {}
    for key in given:
        if key not in defaults:
            hint = difflib.get_close_matches(key, list(defaults), n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise TransrecError(f"layout key '{key}' is not known to adapter {adapter}{suggestion}; "
                                f"known: {', '.join(defaults)}")
    return {**defaults, **given}
