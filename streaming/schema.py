"""The tweet wire schema: one Kafka message is one JSON object; decode and validate a batch of them
into a bronze_tweets table and a bronze_dead_letters table (strict pyarrow, the catalog's schemas).

A message either becomes one bronze row or one dead letter with the reason, never both, never none,
and nothing a message holds can raise out of decode_batch (a decoder failure of any kind is a dead
letter). Fields beyond the schema are kept verbatim as a JSON object in the `extra` column.

created_at must fall in a window: from Twitter's launch (2006-03-21) to a small skew past the time
the message is received (TWEETOPS_MAX_FUTURE_SKEW_S, one day by default). Outside it a date is not a
real tweet's, and a UTC date outside years 1-9999 would make an event_date partition that no reader
of bronze_tweets can parse back.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Sequence

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from tweetops.core.tables import LABELS, UTC_TS, spec

MAX_MESSAGE_BYTES = 64 * 1024  # a tweet is at most a few KB; anything bigger is not a tweet
KNOWN_FIELDS = frozenset({"id", "text", "created_at", "user", "lang", "label"})

EARLIEST_CREATED_AT = datetime(2006, 3, 21, tzinfo=timezone.utc)  # Twitter's launch: no tweet is older
MAX_FUTURE_SKEW = timedelta(days=1)  # default of TWEETOPS_MAX_FUTURE_SKEW_S: clocks of producers drift

# Dead-letter reasons: each stored reason is "<kind>: <detail>", the kind being one of these.
REASONS = ("empty_message", "oversized", "invalid_utf8", "invalid_json", "too_deep", "not_an_object",
           "missing_field", "empty_field", "wrong_type", "bad_timestamp", "no_timezone", "out_of_window",
           "bad_label", "undecodable")

BRONZE_SCHEMA = spec("bronze_tweets").schema
DEAD_LETTER_SCHEMA = spec("bronze_dead_letters").schema

_decode_json = msgspec.json.Decoder().decode
_encode_json = msgspec.json.Encoder().encode
_LABELS = frozenset(LABELS)


class Rejected(ValueError):
    """A message that is not a valid tweet; str() is the dead-letter reason."""

    def __init__(self, kind: str, detail: str):
        assert kind in REASONS, kind
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@dataclass
class DecodedBatch:
    tweets: pa.Table        # bronze_tweets rows
    dead_letters: pa.Table  # bronze_dead_letters rows


def parse_tweet(value: bytes | None, max_bytes: int = MAX_MESSAGE_BYTES, received_at: datetime | None = None,
                max_future: timedelta = MAX_FUTURE_SKEW) -> dict:
    """One message -> the tweet's fields (created_at as an aware datetime, extra as JSON text).

    Raises Rejected with the dead-letter reason, whatever goes wrong. The batch path (decode_batch)
    inlines the same checks. received_at (default: now) ends the timestamp window, plus max_future.
    """
    if not value:
        raise Rejected("empty_message", "the message has no value (a tombstone or zero bytes)")
    if len(value) > max_bytes:
        raise Rejected("oversized", f"{len(value)} bytes > limit of {max_bytes} bytes")
    try:
        obj = _decode(value)
        return _validate(obj, received_at or datetime.now(timezone.utc), max_future)
    except Rejected:
        raise
    except RecursionError:
        raise Rejected("too_deep", "JSON nested too deeply to decode (a tweet nests a few levels at most)") from None
    except Exception as exc:  # noqa: BLE001 - no message may stop ingestion: it becomes a dead letter
        raise Rejected("undecodable", f"{type(exc).__name__}: {str(exc)[:200]}") from None


def _decode(value: bytes):
    try:
        return _decode_json(value)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise Rejected("invalid_utf8", f"byte {bad.start}: {bad.reason}") from None
        raise Rejected("invalid_json", str(exc)) from None


def _check_window(created: datetime, text: str, received_at: datetime, max_future: timedelta) -> None:
    if created < EARLIEST_CREATED_AT:
        raise Rejected("out_of_window", f"created_at {text[:64]!r} is before 2006-03-21, when Twitter began")
    if created > received_at + max_future:
        raise Rejected("out_of_window", f"created_at {text[:64]!r} is more than {max_future} after the message "
                                        f"was received ({received_at:%Y-%m-%dT%H:%M:%SZ}; TWEETOPS_MAX_FUTURE_SKEW_S)")


def _validate(obj, received_at: datetime, max_future: timedelta) -> dict:
    if type(obj) is not dict:
        raise Rejected("not_an_object", f"expected a JSON object, got {_json_type(obj)}")
    tweet_id = _required_string(obj, "id")
    text = _required_string(obj, "text")
    created_at = _required_string(obj, "created_at")
    try:
        created = datetime.fromisoformat(created_at)
    except ValueError:
        raise Rejected("bad_timestamp", f"created_at {created_at[:64]!r} is not an ISO-8601 date-time") from None
    if created.tzinfo is None:
        raise Rejected("no_timezone", f"created_at {created_at[:64]!r} has no timezone (add Z or +00:00)")
    _check_window(created, created_at, received_at, max_future)
    user, lang, label = obj.get("user"), obj.get("lang"), obj.get("label")
    for name, field in (("user", user), ("lang", lang), ("label", label)):
        if field is not None and type(field) is not str:
            raise Rejected("wrong_type", f"{name} must be a string or null, got {_json_type(field)}")
    if label is not None and label not in _LABELS:
        raise Rejected("bad_label", f"label {label[:32]!r} is not one of {', '.join(LABELS)}")
    extra = None
    if obj.keys() - KNOWN_FIELDS:
        extra = _encode_json({k: v for k, v in obj.items() if k not in KNOWN_FIELDS}).decode()
    return {"id": tweet_id, "text": text, "created_at": created, "created_at_text": created_at,
            "user": user, "lang": lang, "label": label, "extra": extra}


def _required_string(obj: dict, name: str) -> str:
    value = obj.get(name)
    if value is None:
        raise Rejected("missing_field", f"{name} is missing or null")
    if type(value) is not str:
        raise Rejected("wrong_type", f"{name} must be a string, got {_json_type(value)}")
    if not value.strip():
        raise Rejected("empty_field", f"{name} is empty")
    return value


def _json_type(value) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def decode_batch(values: Sequence[bytes | None], partitions: Sequence[int], offsets: Sequence[int],
                 keys: Sequence[bytes | None], topic: str, received_at: datetime,
                 max_bytes: int = MAX_MESSAGE_BYTES, max_future: timedelta = MAX_FUTURE_SKEW) -> DecodedBatch:
    """Decode and validate Kafka messages (given column by column) into bronze rows and dead letters.

    Never raises because of what a message holds: every failure is that message's dead letter."""
    ids, texts, created_texts, users, langs, labels, extras, good = [], [], [], [], [], [], [], []
    bad, bad_reasons = [], []
    decode, encode, parse_time, labels_ok = _decode_json, _encode_json, datetime.fromisoformat, _LABELS
    earliest, latest = EARLIEST_CREATED_AT, received_at + max_future
    for i, value in enumerate(values):
        # Fast path: every check inline, no intermediate objects. Anything unusual takes the slow
        # path (parse_tweet), which finds the precise reason (or, were they to disagree, accepts it).
        try:
            obj = decode(value) if value and len(value) <= max_bytes else None
        except Exception:  # noqa: BLE001 - RecursionError, MemoryError...: the slow path names it
            obj = None
        if type(obj) is dict:
            pop = obj.pop
            tweet_id, text, created_at = pop("id", None), pop("text", None), pop("created_at", None)
            user, lang, label = pop("user", None), pop("lang", None), pop("label", None)
            created = extra = None
            if (type(tweet_id) is str and type(text) is str and type(created_at) is str
                    and tweet_id and not tweet_id.isspace() and text and not text.isspace()
                    and (user is None or type(user) is str) and (lang is None or type(lang) is str)
                    and (label is None or (type(label) is str and label in labels_ok))):
                try:
                    created = parse_time(created_at)
                    if created.tzinfo is None or not earliest <= created <= latest:
                        created = None
                    elif obj:
                        extra = encode(obj)
                except Exception:  # noqa: BLE001
                    created = None
            if created is not None:
                ids.append(tweet_id)
                texts.append(text)
                created_texts.append(created_at)
                users.append(user)
                langs.append(lang)
                labels.append(label)
                extras.append(extra)
                good.append(i)
                continue
        try:
            tweet = parse_tweet(value, max_bytes, received_at, max_future)
        except Rejected as reason:
            bad.append(i)
            bad_reasons.append(str(reason))
            continue
        ids.append(tweet["id"])  # unreachable unless the two paths disagree: then the precise one decides
        texts.append(tweet["text"])
        created_texts.append(tweet["created_at_text"])
        users.append(tweet["user"])
        langs.append(tweet["lang"])
        labels.append(tweet["label"])
        extras.append(tweet["extra"].encode() if tweet["extra"] else None)
        good.append(i)

    received = pa.scalar(received_at, UTC_TS)
    partition_col, offset_col = pa.array(partitions, pa.int32()), pa.array(offsets, pa.int64())
    created = _timestamps(created_texts, earliest, latest)
    n = len(good)
    take = pa.array(good, pa.int64())
    tweets = pa.Table.from_arrays([
        pa.array(ids, pa.string()), pa.array(texts, pa.string()), created,
        pa.array(users, pa.string()), pa.array(langs, pa.string()), pa.array(labels, pa.string()),
        pa.array(extras, pa.binary()).cast(pa.string()), pc.cast(created, pa.date32()),
        pa.repeat(received, n), pa.repeat(pa.scalar(topic, pa.string()), n),
        partition_col.take(take), offset_col.take(take),
    ], schema=BRONZE_SCHEMA)
    m = len(bad)
    dead_letters = pa.Table.from_arrays([
        pa.array([values[i] for i in bad], pa.binary()), pa.array([keys[i] for i in bad], pa.binary()),
        pa.array(bad_reasons, pa.string()), pa.repeat(pa.scalar(topic, pa.string()), m),
        partition_col.take(pa.array(bad, pa.int64())), offset_col.take(pa.array(bad, pa.int64())),
        pa.repeat(received, m), pa.repeat(pa.scalar(received_at.date(), pa.date32()), m),
    ], schema=DEAD_LETTER_SCHEMA)
    return DecodedBatch(tweets, dead_letters)


def _timestamps(texts: list[str], earliest: datetime, latest: datetime) -> pa.Array:
    # Arrow parses ISO-8601 strings in C, much faster than converting datetime objects; the few
    # forms Python accepts and Arrow does not (e.g. basic format 20240101T100000Z) take the slow path.
    # Every text was checked to lie in the window by Python: should Arrow read one differently, Python's
    # reading wins, so no event_date outside the window can reach the table.
    try:
        parsed = pa.array(texts, pa.string()).cast(UTC_TS)
        bounds = pc.min_max(parsed)
        if not texts or (bounds["min"].as_py() >= earliest and bounds["max"].as_py() <= latest):
            return parsed
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, OverflowError):
        pass
    return pa.array([datetime.fromisoformat(t) for t in texts], UTC_TS)
