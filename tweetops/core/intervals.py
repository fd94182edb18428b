"""Days and half-open intervals [start, end) of event dates: how every job names the data it covers."""
from __future__ import annotations

import argparse
from datetime import date


def iso_date(text: str) -> date:
    """argparse type for a calendar date: a bad one names the format expected."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a date as YYYY-MM-DD") from None
