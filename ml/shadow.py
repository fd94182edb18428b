"""Shadow and canary serving of the challenger, configured by ml/policy/rollout.yaml.

- **Shadow**: when the registry has a `challenger` alias (on another version than the champion),
  every request is also scored by the challenger, in a background thread: the answer is still the
  champion's and does not wait for it.
- **Canary**: a configured share of requests (`canary_share`, drawn from a seeded generator) is
  answered by the challenger instead, and the answer names the challenger's version; the champion
  then scores those tweets in the shadow.

Both predictions, with their versions, the route and the true label when the request carried one,
go to `gold_shadow_predictions` in batches (a background flusher, every `flush_seconds` or
`flush_rows` rows: never one commit per request) and to /metrics (agreement, live accuracy of
each version on labelled requests). Shadow work never slows or fails an answer: when the
background queue is full, tweets are not shadowed, and that is counted.
"""
from __future__ import annotations

import logging
import queue
import random
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from ml.contract import CHALLENGER
from tweetops.core.config_files import ConfigFileError, ConfigModel, Int, Number, load_config_file
from tweetops.core.settings import Settings

log = logging.getLogger("tweetops.shadow")

ROLLOUT_FILE = Path(__file__).resolve().parent / "policy" / "rollout.yaml"
SHADOW_TABLE = "gold_shadow_predictions"


class RolloutError(ConfigFileError):
    """The rollout policy file is malformed; the message names the field and what it expects."""


class RolloutConfig(ConfigModel):
    shadow: bool = Field(False, strict=True)    # score every request with the challenger too (answers stay the champion's)
    canary_share: Annotated[Number, Field(ge=0, le=1)] = 0.0  # share of requests the challenger answers (0 to 1)
    seed: Int = 42                              # of the canary draw: the same requests go to the challenger on a rerun
    flush_seconds: Annotated[Number, Field(gt=0)] = 5.0   # write gold_shadow_predictions at least this often...
    flush_rows: Annotated[Int, Field(gt=0)] = 2000       # ...or when this many rows wait
    max_pending: Annotated[Int, Field(gt=0)] = 10_000    # tweets waiting for the shadow model; beyond, they are not shadowed

    @property
    def enabled(self) -> bool:
        return self.shadow or self.canary_share > 0


def load_rollout(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RolloutConfig:
    """Read the rollout policy (default ml/policy/rollout.yaml); a RolloutError (a ValueError) naming the
    field if it is wrong."""
    return load_config_file(RolloutConfig, Path(path) if path else ROLLOUT_FILE, overrides, RolloutError,
                            "rollout policy")


class Rollout:
    """The challenger's watcher and model runner, the canary draw, and the shadow scorer/flusher."""

    def __init__(self, settings: Settings, config: RolloutConfig, champion_watcher, metrics_registry, serving_config):
        from prometheus_client import Counter, Gauge

        from ml.serving import ChampionWatcher

        self.settings, self.config, self.champion = settings, config, champion_watcher
        self.serving_config = serving_config
        self.challenger = ChampionWatcher(settings, serving_config.poll_seconds, alias=CHALLENGER)
        self.runner = None
        self._rng, self._rng_lock = random.Random(config.seed), threading.Lock()
        self._pending: queue.Queue = queue.Queue(maxsize=config.max_pending)
        self._rows: list[dict] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._agreed = self._compared = 0
        self.answers = Counter("tweetops_rollout_answers", "Answers by route (champion or canary) and model version",
                               ["route", "model_version"], registry=metrics_registry)
        self.comparisons = Counter("tweetops_shadow_comparisons", "Tweets scored by both champion and challenger",
                                   ["champion_version", "challenger_version", "agree"], registry=metrics_registry)
        self.agreement = Gauge("tweetops_shadow_agreement",
                               "Share of shadowed tweets where champion and challenger agree (since start)",
                               registry=metrics_registry)
        self.live = Counter("tweetops_live_labelled", "Labelled requests scored, by role, version and correctness",
                            ["role", "model_version", "correct"], registry=metrics_registry)
        self.skipped = Counter("tweetops_shadow_skipped", "Tweets not shadowed (queue full or scoring failed)",
                               registry=metrics_registry)
        self.written = Counter("tweetops_shadow_rows_written", f"Rows written to {SHADOW_TABLE}",
                               registry=metrics_registry)
        self.flush_failures = Counter("tweetops_shadow_flush_failures", f"Failed writes to {SHADOW_TABLE}",
                                      registry=metrics_registry)

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        from ml.serving import ModelRunner

        self.challenger.start(wait_seconds=120)
        self.runner = ModelRunner(self.challenger, max_tweets=self.serving_config.max_batch,
                                  max_queue=self.serving_config.max_queue)
        self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
        self._thread.start()
        log.info("rollout: shadow %s, canary share %.0f%%, challenger %s", "on" if self.config.shadow else "off",
                 100 * self.config.canary_share,
                 self.challenger.current.version if self.challenger.current else "none yet")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)  # it scores what is queued and flushes before it ends
        if self.runner is not None:
            self.runner.stop()
        self.challenger.stop()

    # --- per request (event loop: cheap, never blocks) -------------------------------------
    def _pair(self):
        """(champion, challenger) when both are loaded and differ, else None."""
        champion, challenger = self.champion.current, self.challenger.current
        if champion is None or challenger is None or champion.version == challenger.version:
            return None
        return champion, challenger

    def route(self) -> str:
        """'canary' for the configured share of requests (seeded draw), else 'champion'."""
        with self._rng_lock:
            draw = self._rng.random()
        if self.config.canary_share > 0 and draw < self.config.canary_share and self._pair() is not None:
            return "canary"
        return "champion"

    def record(self, route: str, served, tweets: list, labels: list[str]) -> None:
        """Note an answer; queue its tweets for the other model (shadow) unless the queue is full."""
        self.answers.labels(route, served.version).inc(len(tweets))
        if route == "champion" and not self.config.shadow:
            return
        if self._pair() is None:
            return
        item = (route, served.version, [t.id for t in tweets], [t.text for t in tweets],
                [getattr(t, "label", None) for t in tweets], list(labels), _now())
        try:
            self._pending.put_nowait(item)
        except queue.Full:
            self.skipped.inc(len(tweets))

    # --- background: score with the other model, flush in batches ----------------------------
    def _run(self) -> None:
        last_flush = time.monotonic()
        while True:
            timeout = max(0.05, self.config.flush_seconds - (time.monotonic() - last_flush))
            items = []
            try:
                items.append(self._pending.get(timeout=timeout))
                while len(items) < 256:
                    items.append(self._pending.get_nowait())
            except queue.Empty:
                pass
            if items:
                self._score(items)
            stopping = self._stop.is_set() and self._pending.empty()
            due = time.monotonic() - last_flush >= self.config.flush_seconds
            if self._rows and (stopping or due or len(self._rows) >= self.config.flush_rows):
                self.flush()
            if due:
                last_flush = time.monotonic()
            if stopping:
                return

    def _score(self, items: list) -> None:
        from ml.model_access import predict_arrays

        pair = self._pair()
        if pair is None:
            return
        champion, challenger = pair
        by_route = {"champion": challenger, "canary": champion}  # who scores in the shadow
        for route, shadow in by_route.items():
            batch = [item for item in items if item[0] == route]
            if not batch:
                continue
            texts = [text for item in batch for text in item[3]]
            try:
                shadow_labels, _ = predict_arrays(shadow.model, texts)
            except Exception as exc:  # the challenger must never hurt serving: count and go on
                log.warning("shadow scoring by version %s failed: %s", shadow.version, exc)
                self.skipped.inc(len(texts))
                continue
            start = 0
            for _, answered_by, ids, texts_, true_labels, served_labels, at in batch:
                other = shadow_labels[start:start + len(texts_)]
                start += len(texts_)
                for tweet_id, true_label, served_label, other_label in zip(ids, true_labels, served_labels, other):
                    champion_label, challenger_label = ((served_label, other_label) if route == "champion"
                                                        else (other_label, served_label))
                    self._add(at, tweet_id, route, answered_by, champion.version, champion_label,
                              challenger.version, challenger_label, true_label)

    def _add(self, at, tweet_id, route, answered_by, champion_version, champion_label,
             challenger_version, challenger_label, true_label) -> None:
        agree = champion_label == challenger_label
        self._compared += 1
        self._agreed += agree
        self.agreement.set(self._agreed / self._compared)
        self.comparisons.labels(champion_version, challenger_version, str(agree).lower()).inc()
        if true_label is not None:
            self.live.labels("champion", champion_version, str(champion_label == true_label).lower()).inc()
            self.live.labels("challenger", challenger_version, str(challenger_label == true_label).lower()).inc()
        self._rows.append({"scored_at": at, "id": tweet_id, "route": route, "answered_by": answered_by,
                           "model_name": self.settings.model_name,
                           "champion_version": champion_version, "champion_label": champion_label,
                           "challenger_version": challenger_version, "challenger_label": challenger_label,
                           "agree": agree, "label": true_label})

    def flush(self) -> None:
        """Append the waiting rows in one Delta commit; on failure keep them (bounded) for the next try."""
        import pyarrow as pa
        from deltalake import write_deltalake

        from tweetops.core.tables import ensure_table, spec

        rows, self._rows = self._rows, []
        try:
            write_deltalake(ensure_table(SHADOW_TABLE, self.settings),
                            pa.Table.from_pylist(rows, schema=spec(SHADOW_TABLE).schema), mode="append")
            self.written.inc(len(rows))
        except Exception as exc:
            self.flush_failures.inc()
            log.warning("could not write %d rows to %s: %s", len(rows), SHADOW_TABLE, exc)
            keep = rows[-self.config.max_pending:]
            self.skipped.inc(len(rows) - len(keep))
            self._rows = keep + self._rows


def _now() -> datetime:
    return datetime.now(timezone.utc)


def shadow_summary(settings: Settings, since: datetime | None = None) -> dict:
    """Agreement and live accuracy per (champion, challenger) pair from gold_shadow_predictions,
    and since when the pair has been shadowed: what the promotion policy can require."""
    import pyarrow.compute as pc

    from tweetops.core.tables import open_table

    try:
        table = open_table(SHADOW_TABLE, settings)
    except LookupError:
        return {}
    data = table.to_pyarrow_dataset().to_table(
        filter=(pc.field("model_name") == settings.model_name) & (pc.field("scored_at") >= since) if since
        else pc.field("model_name") == settings.model_name)
    out: dict = {}
    for row in data.to_pylist():
        key = (row["champion_version"], row["challenger_version"])
        pair = out.setdefault(key, {"first": row["scored_at"], "last": row["scored_at"], "tweets": 0, "agreed": 0,
                                    "labelled": 0, "champion_correct": 0, "challenger_correct": 0})
        pair["first"], pair["last"] = min(pair["first"], row["scored_at"]), max(pair["last"], row["scored_at"])
        pair["tweets"] += 1
        pair["agreed"] += bool(row["agree"])
        if row["label"] is not None:
            pair["labelled"] += 1
            pair["champion_correct"] += row["champion_label"] == row["label"]
            pair["challenger_correct"] += row["challenger_label"] == row["label"]
    for pair in out.values():
        pair["agreement"] = pair["agreed"] / pair["tweets"]
        pair["hours"] = (pair["last"] - pair["first"]).total_seconds() / 3600
        for role in ("champion", "challenger"):
            pair[f"{role}_accuracy"] = pair[f"{role}_correct"] / pair["labelled"] if pair["labelled"] else None
    return out


def judge_shadow(policy, champion: str, challenger: str, settings: Settings, failures: list, passes: list) -> dict:
    """The promotion policy's optional shadow criteria (`shadow:` in ml/policy/promotion.yaml):
    the challenger was shadowed next to this champion long enough, on enough tweets, and agreed
    often enough. Appends one line to failures or passes; returns the figures for the log."""
    pair = shadow_summary(settings).get((champion, challenger))
    if pair is None:
        failures.append(f"shadow: v{challenger} was never shadowed next to v{champion} "
                        "(turn on shadow serving: ml/policy/rollout.yaml)")
        return {"tweets": 0}
    figures = {k: pair[k] for k in ("tweets", "agreement", "hours", "labelled", "champion_accuracy",
                                    "challenger_accuracy")}
    short = []
    if pair["hours"] < policy.shadow_min_hours:
        short.append(f"{pair['hours']:.1f} h < {policy.shadow_min_hours:g} h")
    if pair["tweets"] < policy.shadow_min_tweets:
        short.append(f"{pair['tweets']} tweets < {policy.shadow_min_tweets}")
    if policy.shadow_min_agreement is not None and pair["agreement"] < policy.shadow_min_agreement:
        short.append(f"agreement {pair['agreement']:.3f} < {policy.shadow_min_agreement:g}")
    quality = "" if not pair["labelled"] else (
        f", live accuracy {pair['challenger_accuracy']:.3f} vs champion {pair['champion_accuracy']:.3f} "
        f"on {pair['labelled']} labelled")
    line = (f"shadow: {pair['tweets']} tweets over {pair['hours']:.1f} h, agreement {pair['agreement']:.3f}"
            + quality)
    (failures if short else passes).append(line + (f" ({'; '.join(short)})" if short else ""))
    return figures
