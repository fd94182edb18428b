"""Container health check of the TweetOps image: `python infra/healthcheck.py [URL ...]`.

With URLs: healthy (exit 0) when every URL answers with HTTP 2xx within 5 s. Without: healthy when
the TWEETOPS_* settings load, so a container with a bad value reports unhealthy and its log names
the variable. Standard library only: the image needs no curl.
"""
from __future__ import annotations

import sys
import urllib.request


def url_healthy(url: str, timeout: float = 5.0) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300, f"{url}: HTTP {response.status}"
    except Exception as exc:  # any failure to answer is "unhealthy", with the reason
        return False, f"{url}: {exc}"


def settings_healthy() -> tuple[bool, str]:
    from tweetops.core.settings import SettingsError, load_settings

    try:
        load_settings()
    except SettingsError as exc:
        return False, str(exc)
    return True, "settings load"


def main(argv: list[str]) -> int:
    results = [url_healthy(url) for url in argv] if argv else [settings_healthy()]
    for ok, message in results:
        print(("ok   " if ok else "FAIL ") + message)
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
