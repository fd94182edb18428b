"""The bronze tweets suite: what one data interval of bronze tweets must satisfy to reach silver.

The suite is code, reviewed and versioned with the rest of the repository; the GX project under
TWEETOPS_HOME/gx only receives a copy at each run. Thresholds are named constants (or a
`Thresholds` override); the interval's bounds are suite parameters, so one suite serves every day.

Two kinds of expectations, and the gate treats them differently:
- row-level (GX column-map expectations: nulls, lengths, sets, bounds, uniqueness) name the rows
  that fail; only those rows are quarantined;
- table-level (schema, types, row count, dead-letter share) judge the interval as a whole; if one
  fails, the whole interval is quarantined.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from tweetops.core.tables import LABELS, spec

SUITE_NAME = "bronze_tweets"

MIN_TEXT_LENGTH = 1          # an empty tweet carries no sentiment
MAX_TEXT_LENGTH = 280        # Twitter's limit since 2017: longer means a broken decoder upstream
ALLOWED_LANGUAGES = ("en",)  # the sentiment models are English-only
ALLOWED_LABELS = LABELS      # negative, neutral, positive (a missing label is fine: unlabelled tweets)
MAX_DEAD_LETTER_SHARE = 0.05  # above 5% undecodable messages, the producer or the schema is broken
MIN_ROW_COUNT = 100          # fewer tweets in a day means ingestion stalled, not that the world went quiet

# The interval's dead-letter share travels with the batch as a constant column, so that GX reports
# it (observed vs expected, in Data Docs) like every other expectation.
DEAD_LETTER_SHARE_COLUMN = "dead_letter_share"
# A bronze row is one Kafka message: GX names failing rows by these columns.
ROW_KEY = ["kafka_topic", "kafka_partition", "kafka_offset"]


@dataclass(frozen=True)
class Thresholds:
    min_text_length: int = MIN_TEXT_LENGTH
    max_text_length: int = MAX_TEXT_LENGTH
    allowed_languages: tuple[str, ...] = ALLOWED_LANGUAGES
    allowed_labels: tuple[str, ...] = ALLOWED_LABELS
    max_dead_letter_share: float = MAX_DEAD_LETTER_SHARE
    min_row_count: int = MIN_ROW_COUNT


def batch_columns() -> list[str]:
    """The columns of a validated batch: bronze_tweets' columns plus the dead-letter share."""
    return [*spec("bronze_tweets").schema.names, DEAD_LETTER_SHARE_COLUMN]


def build_suite(thresholds: Thresholds = Thresholds()):
    """The GX ExpectationSuite for bronze tweets; bind an interval with `suite_parameters`."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    t = thresholds
    expectations = [
        # Table-level: the interval as a whole.
        gxe.ExpectTableColumnsToMatchSet(
            column_set=batch_columns(), exact_match=True,
            description="bronze schema: exactly the columns of bronze_tweets"),
        gxe.ExpectColumnTypeToBe(column="id", type_="object", description="id is a string"),
        gxe.ExpectColumnTypeToBe(column="text", type_="object", description="text is a string"),
        gxe.ExpectColumnTypeToBe(column="created_at", type_="datetime64[us, UTC]",
                                 description="created_at is a UTC timestamp"),
        gxe.ExpectTableRowCountToBeBetween(
            min_value=t.min_row_count, description=f"at least {t.min_row_count} tweets in the interval"),
        gxe.ExpectColumnMaxToBeBetween(
            column=DEAD_LETTER_SHARE_COLUMN, max_value=t.max_dead_letter_share,
            description=f"dead letters at most {t.max_dead_letter_share:.0%} of the interval's messages"),
        # Row-level: each failing row is quarantined, the others go on to silver.
        gxe.ExpectColumnValuesToNotBeNull(column="id", description="every tweet has an id"),
        gxe.ExpectColumnValuesToNotBeNull(column="text", description="every tweet has a text"),
        gxe.ExpectColumnValuesToBeUnique(
            column="id", description="one tweet per id (redeliveries of the same tweet are dropped first)"),
        gxe.ExpectColumnValueLengthsToBeBetween(
            column="text", min_value=t.min_text_length, max_value=t.max_text_length,
            description=f"text length between {t.min_text_length} and {t.max_text_length}"),
        gxe.ExpectColumnValuesToBeBetween(
            column="created_at", min_value={"$PARAMETER": "interval_start"},
            max_value={"$PARAMETER": "latest_created_at"}, strict_max=True,
            description="created_at inside the data interval and not in the future"),
        gxe.ExpectColumnValuesToBeInSet(
            column="lang", value_set=list(t.allowed_languages),
            description=f"language in {', '.join(t.allowed_languages)} (or unknown)"),
        gxe.ExpectColumnValuesToBeInSet(
            column="label", value_set=list(t.allowed_labels),
            description=f"label in {', '.join(t.allowed_labels)} (or unlabelled)"),
    ]
    return gx.ExpectationSuite(name=SUITE_NAME, expectations=expectations,
                               meta={"source": "expectations/bronze_tweets.py"})


def suite_parameters(interval_start: datetime, interval_end: datetime, now: datetime | None = None) -> dict:
    """The values that bind the suite to one interval: created_at in [start, min(end, now))."""
    now = now or datetime.now(timezone.utc)
    return {"interval_start": interval_start, "latest_created_at": min(interval_end, now)}
