"""Hypothesis strategies shared by the data tests: text that any record format can hold."""

from __future__ import annotations

from hypothesis import strategies as st

# Any unicode except surrogates (not encodable as UTF-8, so not storable in any of the formats).
_ANY = st.characters(blacklist_categories=("Cs",))


MARKERS = ("\n\nHuman:", "\n\nAssistant:")


def _clean(s: str) -> bool:
    # Contents are stored stripped, and a literal turn marker inside a turn is indistinguishable
    # from a new turn in the HH format itself, so neither can round-trip.
    return bool(s) and s == s.strip() and not any(m in s for m in MARKERS)


content = st.text(_ANY, min_size=1, max_size=40).map(str.strip).filter(_clean)


# The turn markers themselves and HH-like fragments are likely inputs that break naive splitters.
tricky = st.sampled_from(
    ["Human: x", "Assistant:", "a\n\nb", "\n\nHuman", "Q:\nA:", "é\u2028ü", "\x00"]
)


text = st.one_of(content, st.builds(lambda a, b: f"{a} {b}", tricky, content).filter(_clean))
