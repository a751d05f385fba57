"""A vote's style counts: the public battle format's `conv_metadata`, reduced to four per side.

Style control (leaderboard) rates models with these as covariates; the vote stores them in its
own columns (`Vote.set_facts`) so a recompute reads numbers, not JSON.
"""

from __future__ import annotations

from typing import Any

FEATURES = ("length", "headers", "lists", "bold")

# Per feature, the conv_metadata keys of answer A and answer B in the public battle dumps. A value
# is a count or a dict of counts (h1..h6, ordered/unordered, **/__), which are summed.
KEYS = {
    "length": ("sum_assistant_a_tokens", "sum_assistant_b_tokens"),
    "headers": ("header_count_a", "header_count_b"),
    "lists": ("list_count_a", "list_count_b"),
    "bold": ("bold_count_a", "bold_count_b"),
}


def style_counts(metadata: Any) -> list[list[float]]:
    """[a-side, b-side] counts of FEATURES from a conv_metadata dict; a missing or odd count is 0."""
    metadata = metadata if isinstance(metadata, dict) else {}
    sides: list[list[float]] = [[], []]
    for feature in FEATURES:
        for side, key in zip(sides, KEYS[feature], strict=True):
            value = metadata.get(key)
            parts = value.values() if isinstance(value, dict) else [value]
            side.append(
                float(sum(p for p in parts if isinstance(p, int | float) and not isinstance(p, bool)))
            )
    return sides
