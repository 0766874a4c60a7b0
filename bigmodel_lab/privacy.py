"""Find and redact personal data (emails, phone numbers, URLs) in free text.

Reviews scraped from the web carry addresses people typed in. Before text is used for
training or written to a log, each match is replaced by a placeholder such as `[EMAIL]`, so
the sentence keeps its shape (a model still sees that an address was there) but not the
address. Regular expressions catch the common formats only; they are a first line of
defence, not a guarantee. How good a first line is measured, not assumed: `plant_pii` hides
known (made-up) emails, phone numbers and names in real text, and `redaction_scores` gives
the precision and recall of `redact` on them. Counting matches before and after redaction
proves nothing: the same patterns find nothing in what they just replaced.

A bare site name ("IMDb.com", "Amazon.com") is not personal data and is left alone; links
with a scheme or `www.` are replaced by [URL], since a link can point at a person's page.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence

# Order matters: emails before URLs (an email's domain looks like a URL), URLs before phones.
PATTERNS: dict[str, re.Pattern] = {
    "email": re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b"),
    # A link: scheme or www., or a domain followed by a path (imdb.com/user/ur123).
    "url": re.compile(
        r"(?:\bhttps?://|\bwww\.)[^\s<>\"']*[^\s<>\"'.,;:!?)\]]"  # scheme or www.
        r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|edu|gov|co\.uk|de|fr|ca|info|tv|io)"
        r"/[^\s<>\"']*[^\s<>\"'.,;:!?)\]]",
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


# --- measuring redaction on planted personal data ---------------------------------------

_FIRST = ("Maria", "John", "Aisha", "Kenji", "Olga", "Pedro", "Fatima", "Lars", "Chloe", "Ravi")
_LAST = ("Okafor", "Lindqvist", "Tanaka", "Moreau", "Kowalski", "Haddad", "Silva", "Novak",
         "Brennan", "Iyer")
_DOMAINS = ("example.org", "mail.example.com", "example.net", "example.co.uk")
_TEMPLATES = {
    "email": ("Write to me at {} if you agree.", "Contact: {}", "(mail {} for my list)"),
    "phone": ("Call me on {} to talk about it.", "My number is {}.", "Text {} anytime."),
    "name": ("Review by {}.", "My friend {} loved it.", "Signed, {}"),
}
PLANTED_KINDS = tuple(_TEMPLATES)


def _fake(kind: str, rng: random.Random) -> str:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    if kind == "email":
        sep = rng.choice((".", "_", ""))
        return f"{first.lower()}{sep}{last.lower()}{rng.randint(1, 99)}@{rng.choice(_DOMAINS)}"
    if kind == "phone":
        a, b, c = rng.randint(200, 989), rng.randint(200, 999), rng.randint(0, 9999)
        return rng.choice((f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"{a}.{b}.{c:04d}",
                           f"+1 {a} {b} {c:04d}", f"+44 20 {b}{rng.randint(0, 9)} {c:04d}"))
    return f"{first} {last}"


def plant_pii(texts: Sequence[str], n: int = 300, seed: int = 0
              ) -> tuple[list[str], list[tuple[str, str]]]:
    """Append one made-up email, phone number or name to each of `n` texts (chosen among those
    in which `find_pii` finds nothing, so every personal datum present is a planted one).

    Returns (texts with the plant, [(kind, planted string)] per text). The values are fake:
    example.* domains, random digits, names from a fixed list."""
    rng = random.Random(seed)
    clean = [t for t in texts if not any(find_pii(t).values())]
    if len(clean) < n:
        raise ValueError(f"Only {len(clean)} texts without personal data to plant into; pass "
                         f"more texts or a smaller n (got n={n}).")
    out, truth = [], []
    for i, text in enumerate(rng.sample(clean, n)):
        kind = PLANTED_KINDS[i % len(PLANTED_KINDS)]
        value = _fake(kind, rng)
        out.append(f"{text} {rng.choice(_TEMPLATES[kind]).format(value)}")
        truth.append((kind, value))
    return out, truth


def redaction_scores(texts: Sequence[str], truth: Sequence[tuple[str, str]], redact_fn=None
                     ) -> dict[str, dict[str, float]]:
    """Recall and precision of `redact_fn` (default `redact`) on `plant_pii` output.

    recall = planted values of the kind no longer present after redaction / planted values;
    precision = placeholders of the kind that cover a planted value of the kind / all
    placeholders of the kind inserted ([EMAIL], [PHONE]; names have no pattern, so no
    placeholder and no precision). Returns {kind: {"planted", "caught", "recall",
    "placeholders", "precision"}}."""
    redact_fn = redact_fn or redact
    scores = {k: {"planted": 0, "caught": 0, "placeholders": 0, "correct": 0} for k in PLANTED_KINDS}
    for text, (kind, value) in zip(texts, truth):
        cleaned = redact_fn(text)
        s = scores[kind]
        s["planted"] += 1
        s["caught"] += value not in cleaned
        for other in ("email", "phone"):
            n = cleaned.count(PLACEHOLDERS[other]) - text.count(PLACEHOLDERS[other])
            scores[other]["placeholders"] += n
            # a placeholder is right when it stands where the planted value of its kind was
            scores[other]["correct"] += min(n, int(other == kind and value not in cleaned))
    for s in scores.values():
        s["recall"] = s["caught"] / s["planted"] if s["planted"] else float("nan")
        s["precision"] = s.pop("correct") / s["placeholders"] if s["placeholders"] else float("nan")
    return scores
