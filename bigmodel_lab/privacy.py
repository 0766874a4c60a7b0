"""Find and redact personal data (emails, phone numbers, URLs) in free text.

Reviews scraped from the web carry addresses people typed in. Before text is used for
training or written to a log, each match is replaced by a placeholder such as `[EMAIL]`, so
the sentence keeps its shape (a model still sees that an address was there) but not the
address. Regular expressions catch the common formats only; they are a first line of
defence, not a guarantee, and the counts below are what they caught.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Order matters: emails before URLs (an email's domain looks like a URL), URLs before phones.
PATTERNS: dict[str, re.Pattern] = {
    "email": re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b"),
    "url": re.compile(
        r"(?:\bhttps?://|\bwww\.)[^\s<>\"']*[^\s<>\"'.,;:!?)\]]"  # scheme or www.
        r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|edu|gov|co\.uk|de|fr|ca|info|tv|io)\b"
        r"(?:/[^\s<>\"']*[^\s<>\"'.,;:!?)\]])?",
        re.IGNORECASE,
    ),
    # Phone numbers written with separators: 555-123-4567, (555) 123 4567, +1 555 123 4567,
    # +44 20 7946 0958. Bare digit runs (years, 7/10, 12.000.000 dollars) are left alone.
    "phone": re.compile(
        r"(?<![\w/.,])(?:"
        r"(?:\+?1[\s.-])?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}"
        r"|\+\d{1,3}[\s.-]\d{1,4}[\s.-]\d{3,4}[\s.-]\d{3,4}"
        r")(?![\w/]|[.,]\d)"
    ),
}
PLACEHOLDERS = {kind: f"[{kind.upper()}]" for kind in PATTERNS}


def find_pii(text: str) -> dict[str, list[str]]:
    """The matches of each kind in one text, after earlier kinds are redacted."""
    found: dict[str, list[str]] = {}
    for kind, pattern in PATTERNS.items():
        found[kind] = pattern.findall(text)
        text = pattern.sub(PLACEHOLDERS[kind], text)
    return found


def redact(text: str) -> str:
    """Replace emails, URLs and phone numbers by [EMAIL], [URL], [PHONE]."""
    if not isinstance(text, str):
        raise TypeError(f"redact expects a string, got {type(text).__name__}; pass str(value).")
    for kind, pattern in PATTERNS.items():
        text = pattern.sub(PLACEHOLDERS[kind], text)
    return text


def count_pii(texts: Iterable[str]) -> dict[str, int]:
    """Number of matches of each kind over many texts, plus how many texts had any."""
    counts = dict.fromkeys(PATTERNS, 0)
    counts["texts_with_any"] = 0
    for text in texts:
        found = find_pii(text)
        for kind, matches in found.items():
            counts[kind] += len(matches)
        counts["texts_with_any"] += any(found.values())
    return counts


def redact_all(texts: Iterable[str]) -> tuple[list[str], dict[str, int], dict[str, int]]:
    """Redact every text; return (redacted texts, counts before, counts after)."""
    texts = list(texts)
    before = count_pii(texts)
    redacted = [redact(t) for t in texts]
    return redacted, before, count_pii(redacted)
