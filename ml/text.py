"""Text functions shared by ingestion, features, training and serving (one implementation, no skew)."""
from __future__ import annotations

import re

# The corpus was mangled before it was published: curly quotes and emojis became runs like
# "Õ¢_Î_¢" that no codec can undo. ftfy repairs what is repairable; the remaining runs of
# non-ASCII mojibake (with the underscores glued between them) are dropped.
_MOJIBAKE_RUN = re.compile(r"(?:[^\x00-\x7F]|_(?=[^\x00-\x7F]))+_?")
_SPACES = re.compile(r"\s+")

TOPIC_PATTERNS: dict[str, re.Pattern] = {
    "airline": re.compile(r"@(united|americanair|southwestair|usairways|jetblue|virginamerica|delta)\b"
                          r"|\b(flight|airline|cancelled flightled)\b", re.I),
    "self_driving": re.compile(r"driverless|self[- ]driving|autonomous (car|vehicle)", re.I),
    "apple": re.compile(r"@apple\b|#apple\b|\biphone|\bipad|\bitunes\b|\bapple\b", re.I),
    "google": re.compile(r"\bgoogle\b", re.I),
}


def repair_text(text: str) -> str:
    """Deterministically repair mojibake and whitespace; the same input always gives the same output."""
    import ftfy

    text = ftfy.fix_text(text)
    if not text.isascii():
        text = _MOJIBAKE_RUN.sub(lambda m: " " if _looks_broken(m.group()) else m.group(), text)
    return _SPACES.sub(" ", text).strip()


def _looks_broken(run: str) -> bool:
    # Emoji and letters of real scripts survive ftfy; Latin-1 punctuation soup does not.
    return any("\u0080" <= ch <= "\u02ff" or ch in "\ufffd" for ch in run)


def topic_of(text: str) -> str:
    """The topic or brand a tweet is about, when recognisable: airline, self_driving, apple, google, other."""
    for topic, pattern in TOPIC_PATTERNS.items():
        if pattern.search(text):
            return topic
    return "other"
