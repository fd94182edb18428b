"""Property-based fuzzing of the tweet decoder: whatever bytes arrive, each message becomes exactly one
bronze row or one dead letter, nothing raises, and every row reads back (no unreadable event_date)."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streaming.schema import EARLIEST_CREATED_AT, MAX_FUTURE_SKEW, REASONS, decode_batch

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text with unpaired surrogates, control characters and astral emoji.
texts = st.text(st.characters(codec=None, categories=None), max_size=40)
numbers = st.one_of(st.integers(min_value=-(10**40), max_value=10**40),
                    st.floats(allow_nan=True, allow_infinity=True), st.just(10**400))
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(texts, inner, max_size=4)), max_leaves=12)


@st.composite
def odd_timestamps(draw) -> str:
    moment = draw(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)))
    offset = draw(st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1))
    near_now = NOW + timedelta(seconds=draw(st.integers(-10**8, 10**6)))
    return draw(st.sampled_from([
        moment.isoformat() + f"{'+' if offset >= 0 else '-'}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}",
        moment.isoformat() + "Z", moment.isoformat(), near_now.isoformat(), near_now.strftime("%Y%m%dT%H%M%S%z"),
        "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00", "+10000-01-01T00:00:00Z", "2024-13-01T00:00:00Z",
        "2024-06-01T24:00:00Z", "2024-06-01T23:59:60Z", "2024-W01-1T00:00Z", "2024-06-01T00:00:00.1234567Z",
        draw(texts)]))


def nested(depth: int, inside: str = "1") -> str:
    return "[" * depth + inside + "]" * depth


@st.composite
def tweet_like(draw) -> bytes:
    fields = {"id": draw(st.one_of(texts, json_values)), "text": draw(st.one_of(texts, json_values)),
              "created_at": draw(st.one_of(odd_timestamps(), json_values)),
              "user": draw(st.one_of(st.none(), texts, json_values)),
              "label": draw(st.sampled_from([None, "negative", "neutral", "positive", "Positive", 3]))}
    for name in draw(st.lists(st.sampled_from(list(fields)), max_size=2)):
        fields.pop(name, None)  # missing fields
    fields.update(draw(st.dictionaries(texts, json_values, max_size=3)))
    text = json.dumps(fields, allow_nan=True)  # NaN/Infinity tokens and \ud800 escapes are not valid JSON for all
    depth = draw(st.sampled_from([0, 0, 0, 50, 999, 1000, 5000]))
    if depth:  # deep nesting inside a field or as the whole message
        text = draw(st.sampled_from([nested(depth), text[:-1] + f', "deep": {nested(depth)}}}',
                                     text.replace('"text": ', f'"text": {nested(depth)}, "x": ', 1)]))
    return text.encode("utf-8", "surrogatepass")


messages = st.one_of(st.none(), st.binary(max_size=300), tweet_like(),
                     json_values.map(lambda v: json.dumps(v, allow_nan=True).encode("utf-8", "surrogatepass")))


@FUZZ
@given(st.lists(messages, min_size=1, max_size=12))
def test_every_message_becomes_exactly_one_row_or_dead_letter(values):
    n = len(values)
    batch = decode_batch(values, [0] * n, list(range(n)), [None] * n, "fuzz", NOW)

    offsets = batch.tweets.column("kafka_offset").to_pylist() + batch.dead_letters.column("kafka_offset").to_pylist()
    assert sorted(offsets) == list(range(n))
    rows = batch.tweets.to_pylist()  # raises on a date no reader could parse back
    for row in rows:
        assert EARLIEST_CREATED_AT <= row["created_at"] <= NOW + MAX_FUTURE_SKEW
        assert date(2006, 3, 21) <= row["event_date"] <= (NOW + MAX_FUTURE_SKEW).date()
        assert row["event_date"] == row["created_at"].date()
    for dead in batch.dead_letters.to_pylist():
        assert dead["reason"].split(":")[0] in REASONS
        assert dead["raw"] == values[dead["kafka_offset"]]


@FUZZ
@given(odd_timestamps())
def test_an_accepted_timestamp_is_inside_the_window(created_at):
    value = json.dumps({"id": "t", "text": "x", "created_at": created_at}).encode("utf-8", "surrogatepass")
    batch = decode_batch([value], [0], [0], [None], "fuzz", NOW)
    if batch.tweets.num_rows:
        [row] = batch.tweets.to_pylist()
        assert EARLIEST_CREATED_AT <= row["created_at"] <= NOW + MAX_FUTURE_SKEW
    else:
        [reason] = batch.dead_letters.column("reason").to_pylist()
        assert reason.split(":")[0] in {"bad_timestamp", "no_timezone", "out_of_window", "empty_field"}
