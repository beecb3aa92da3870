"""The one error type for bad user input, shared by every stage.

It lives in ``foundation``, below every stage, so each may import it without breaking the
layering rule. The CLI turns it into a one-line
message and exit code 2; anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class InputError(ValueError):
    """Bad input from the user: a file, a line, a field or a name.

    The message must name where the problem is (file, line, field) and, where possible, what
    would be accepted instead, so that the user can fix it without reading our code.
    """


def close_matches(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Format a 'did you mean' hint for an unknown name, or the list of valid names."""
    pool = sorted(set(choices))
    lowered = {c.lower(): c for c in pool}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    if hits:
        return "did you mean " + ", ".join(repr(lowered[h]) for h in hits) + "?"
    return "choose one of: " + ", ".join(pool)


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> InputError:
    """Build the error for an unknown model, hardware, device, version... name."""
    return InputError(f"unknown {kind} {name!r}; {close_matches(name, choices)}")
