"""The text functions as they were before the fast paths: the reference tweetops.core.text must equal.

Kept unchanged so a test can compare every output on the whole corpus and `tweetops bench text`
can print the per-tweet cost before and after. Never import this from product code.
"""
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
        text = _MOJIBAKE_RUN.sub(lambda m: m.group() if _is_accented_letter(m) or not _looks_broken(m.group())
                                 else " ", text)
    return _SPACES.sub(" ", text).strip()


def _is_accented_letter(match: re.Match) -> bool:
    """A lone Latin-1 letter right after an ASCII letter ("café", "niño") is real text, not soup."""
    run, start = match.group(), match.start()
    return (len(run) == 1 and "\u00c0" <= run <= "\u00ff" and run.isalpha()
            and start > 0 and match.string[start - 1].isascii() and match.string[start - 1].isalpha())


def _looks_broken(run: str) -> bool:
    # Emoji and letters of real scripts survive ftfy; Latin-1 punctuation soup does not.
    return any("\u0080" <= ch <= "\u02ff" or ch in "\ufffd" for ch in run)


def topic_of(text: str) -> str:
    """The topic or brand a tweet is about, when recognisable: airline, self_driving, apple, google, other."""
    for topic, pattern in TOPIC_PATTERNS.items():
        if pattern.search(text):
            return topic
    return "other"


# --- Normalisation: the text every model sees, at feature, training and prediction time --------

URL_TOKEN, USER_TOKEN, NUMBER_TOKEN = "<url>", "<user>", "<num>"

_URL = re.compile(r"(?:https?://|www\.)\S+|\b[\w.-]+\.(?:com|org|net|co|ly|io|gl)/\S*", re.I)
# Truncated retweets end in "http://t.co/M93U" or a bare "http": treat a dangling scheme as a URL too.
_DANGLING_URL = re.compile(r"\bhttps?:?/*\S*$", re.I)
_MENTION = re.compile(r"(?<![\w@])@\w+")
_HASHTAG = re.compile(r"(?<![\w#])#\w+")
_NUMBER = re.compile(r"(?<![\w<#])[+-]?\d+(?:[.,:/]\d+)*(?:st|nd|rd|th|am|pm|k|s)?\b", re.I)
_REPEATS = re.compile(r"(\w)\1{3,}")
_EMOJI = re.compile(
    "[\U0001F1E6-\U0001F1FF\U0001F300-\U0001F5FF\U0001F600-\U0001F64F\U0001F680-\U0001F6FF"
    "\U0001F900-\U0001F9FF\U0001FA70-\U0001FAFF\u2600-\u27BF\u2B50\u2764]"
    r"|(?<!\w)[:;=8][-']?[)(DPp/\\|*3](?!\w)|<3"
)


def normalize_text(text: str) -> str:
    """The one normalisation of tweet text: repaired, lowercased, URLs, @mentions and numbers
    replaced by <url>, <user>, <num>, runs of 4+ repeated letters cut to 3 ("soooooo" -> "sooo")."""
    return _normalize_repaired(repair_text(text or ""))


def _normalize_repaired(text: str) -> str:
    text = _DANGLING_URL.sub(f" {URL_TOKEN}", _URL.sub(f" {URL_TOKEN} ", text))
    text = _NUMBER.sub(NUMBER_TOKEN, _MENTION.sub(USER_TOKEN, text))
    text = _REPEATS.sub(r"\1\1\1", text.lower())
    return _SPACES.sub(" ", text).strip()


def tweet_features(text: str) -> dict[str, str | int | float]:
    """Everything gold_features derives from one tweet's text: the normalised text, surface counts
    (taken on the repaired text, URLs excluded) and the topic."""
    text = repair_text(text or "")
    normalized = _normalize_repaired(text)
    without_urls = _DANGLING_URL.sub(" ", _URL.sub(" ", text))
    letters = [ch for ch in without_urls if ch.isalpha()]
    return {
        "text_normalized": normalized,
        "token_count": len(normalized.split()),
        "n_hashtags": len(_HASHTAG.findall(without_urls)),
        "n_mentions": len(_MENTION.findall(without_urls)),
        "n_urls": normalized.count(URL_TOKEN),
        "n_emojis": len(_EMOJI.findall(without_urls)),
        "n_exclamations": without_urls.count("!"),
        "n_questions": without_urls.count("?"),
        "uppercase_ratio": round(sum(ch.isupper() for ch in letters) / len(letters), 6) if letters else 0.0,
        "topic": topic_of(text),
    }
