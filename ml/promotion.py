"""The promotion gate: a challenger becomes champion only when it is really better.

`decide_promotion(version)` applies the policy of ml/policy/promotion.yaml: the challenger must beat
the champion by the margin in macro-F1 on the fixed test split (the test rows of the challenger's
gold_features version, which no model is ever trained on) AND on the recent labelled window of
silver tweets (minus any tweet either model may have been trained on), AND pass the behavioural
checks. Promoted: the champion alias moves to it. Refused: it stays challenger, with the reason.

MLflow keeps no alias history, so every promotion, refusal and rollback is appended to
gold_promotion_log: who (the Airflow run or the OS user), when, the metrics and the reason.
The decision is logged before any alias moves: a retry of the same Airflow run finds its logged
decision and finishes applying it (instead of deciding again, or finding no challenger left), so
a crash at any point ends, after the retry, with one log row, the alias moved once and the alert.
`tweetops promote --version N` moves the champion by hand (a rollback), `--challenger` applies the policy.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr

from tweetops.core.config_files import ConfigFileError, ConfigModel, Int, Number, load_config_file
from ml import model_access
from tweetops.core.settings import Settings, load_settings

POLICY_FILE = Path(__file__).resolve().parent / "policy" / "promotion.yaml"
LOG_TABLE = "gold_promotion_log"
TAG_PROMOTION = "tweetops.promotion"   # the latest decision, on the model version itself

PROMOTE, REFUSE, ROLLBACK, MANUAL_PROMOTE, NOOP = "promote", "refuse", "rollback", "manual_promote", "noop"


class PolicyError(ConfigFileError):
    """The promotion policy file is malformed; the message names the field and what it expects."""


class TestSplitPolicy(ConfigModel):
    max_rows: Annotated[Int, Field(ge=1)] = 5000


class RecentWindowPolicy(ConfigModel):
    days: Annotated[Int, Field(ge=1)] = 7
    max_rows: Annotated[Int, Field(ge=1)] = 5000
    min_rows: Annotated[Int, Field(ge=1)] = 100
    required: bool = Field(False, strict=True)


class BehaviourPolicy(ConfigModel):
    gate: Literal["pass", "no_regression"] = "no_regression"


class ShadowPolicy(ConfigModel):
    """Shadow serving (ml/shadow.py) before promotion: all off by default."""
    min_hours: Annotated[Number, Field(ge=0)] = 0.0               # the pair was shadowed for at least this long
    min_tweets: Annotated[Int, Field(ge=0)] = 0                   # ... on at least this many tweets
    min_agreement: Annotated[Number, Field(ge=0)] | None = None   # ... agreeing on at least this share


class PromotionPolicy(ConfigModel):
    """ml/policy/promotion.yaml, validated; the flat names (policy.recent_days, ...) read its sections."""

    margin: Annotated[Number, Field(ge=0)] = 0.005
    seed: Annotated[Int, Field(ge=0)] = 7
    test_split: TestSplitPolicy = TestSplitPolicy()
    recent_window: RecentWindowPolicy = RecentWindowPolicy()
    behaviour: BehaviourPolicy = BehaviourPolicy()
    shadow: ShadowPolicy = ShadowPolicy()
    _source: str = PrivateAttr("<dict>")

    source = property(lambda self: self._source)
    test_max_rows = property(lambda self: self.test_split.max_rows)
    recent_days = property(lambda self: self.recent_window.days)
    recent_max_rows = property(lambda self: self.recent_window.max_rows)
    recent_min_rows = property(lambda self: self.recent_window.min_rows)
    recent_required = property(lambda self: self.recent_window.required)
    behaviour_gate = property(lambda self: self.behaviour.gate)          # pass | no_regression
    shadow_min_hours = property(lambda self: self.shadow.min_hours)
    shadow_min_tweets = property(lambda self: self.shadow.min_tweets)
    shadow_min_agreement = property(lambda self: self.shadow.min_agreement)


def load_policy(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PromotionPolicy:
    """Read and validate the policy (default ml/policy/promotion.yaml); overrides: {"margin": 0.02}."""
    return load_config_file(PromotionPolicy, Path(path) if path else POLICY_FILE, overrides, PolicyError,
                            "promotion policy")


@dataclass
class Decision:
    action: str                    # promote | refuse | noop (policy); rollback | manual_promote (by hand)
    model_name: str
    challenger_version: str
    champion_version: str | None   # the champion before the decision
    reason: str
    actor: str
    at: datetime
    metrics: dict = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        return self.action in (PROMOTE, ROLLBACK, MANUAL_PROMOTE)

    def as_dict(self) -> dict:
        return {**asdict(self), "at": self.at.isoformat(), "promoted": self.promoted}

    def message(self) -> str:
        """One paragraph for people: the Slack alert and the CLI."""
        verb = {PROMOTE: f"promoted to champion (was v{self.champion_version})",
                REFUSE: f"refused: v{self.champion_version} stays champion, v{self.challenger_version} stays challenger",
                NOOP: "nothing to do",
                ROLLBACK: f"champion rolled back from v{self.champion_version}",
                MANUAL_PROMOTE: f"made champion by hand (was v{self.champion_version})"}[self.action]
        return f"{self.model_name} v{self.challenger_version} {verb}.\n{self.reason}\nBy {self.actor}."


def alert_message(decision: dict | Decision) -> tuple[str, list[dict]]:
    """(text, Slack blocks) announcing a promotion decision."""
    d = decision if isinstance(decision, dict) else decision.as_dict()
    icon = {PROMOTE: ":trophy:", REFUSE: ":no_entry:", ROLLBACK: ":rewind:", MANUAL_PROMOTE: ":arrow_up:"}.get(
        d["action"], ":information_source:")
    title = {PROMOTE: "Challenger promoted", REFUSE: "Challenger refused", ROLLBACK: "Champion rolled back",
             MANUAL_PROMOTE: "Champion set by hand"}.get(d["action"], "Promotion: nothing to do")
    head = (f"{icon} {title}: {d['model_name']} v{d['challenger_version']} "
            f"(champion was v{d['champion_version']})")
    text = f"{head}\n{d['reason']}\nBy {d['actor']}; logged in {LOG_TABLE}."
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": head}},
              {"type": "section", "text": {"type": "mrkdwn", "text": f"{d['reason']}\n_By {d['actor']}; "
                                                                     f"logged in {LOG_TABLE}._"[:2900]}}]
    return text, blocks


def default_actor() -> str:
    """Who decides when nobody says: the OS user (the promotion DAG passes its run as the actor)."""
    try:
        return f"user:{getpass.getuser()}"
    except Exception:  # no login name (some containers)
        return f"user:uid-{os.getuid()}"


# --- the policy ----------------------------------------------------------------------------------

def decide_promotion(challenger_version: str | int | None = None, settings: Settings | None = None,
                     actor: str | None = None, policy: PromotionPolicy | str | Path | None = None) -> Decision:
    """Apply the promotion policy to a challenger version (default: the one behind the challenger
    alias), move the aliases accordingly and log the decision. See the module docstring."""
    from ml import registry

    settings = settings or load_settings()
    actor = actor or default_actor()
    logged = _logged_decision(actor, settings, challenger_version)
    if logged is not None:  # a retry of this Airflow run: finish applying what its first try decided
        _move_aliases(logged, settings)
        return logged
    policy = policy if isinstance(policy, PromotionPolicy) else load_policy(policy)
    if challenger_version is None:
        challenger = registry.challenger(settings)
        if challenger is None:
            raise LookupError(f"{settings.model_name!r} has no challenger in the registry at "
                              f"{settings.mlflow_tracking_uri}: train one first (`tweetops train`)")
        challenger_version = challenger.version
    challenger_version = str(model_access.resolve(settings, challenger_version).version)
    champion_version = _champion_version(settings)
    now = datetime.now(timezone.utc)

    if champion_version == challenger_version:
        return Decision(NOOP, settings.model_name, challenger_version, champion_version,
                        f"v{challenger_version} already is the champion", actor, now)
    if champion_version is None:
        decision = Decision(PROMOTE, settings.model_name, challenger_version, None,
                            "there was no champion: the first model is promoted as is", actor, now)
    else:
        decision = _compare(challenger_version, champion_version, settings, policy, actor, now)
    _apply(decision, settings)
    return decision


def _compare(challenger: str, champion: str, settings: Settings, policy: PromotionPolicy, actor: str,
             now: datetime) -> Decision:
    from ml.behaviour import run_behaviour_checks

    models = {"champion": _load(champion, settings), "challenger": _load(challenger, settings)}
    metrics: dict[str, Any] = {"margin": policy.margin, "policy": policy.source}
    failures, passes = [], []

    test = _test_split(challenger, settings, policy)
    metrics["test_split"] = {"rows": len(test["texts"]), "features_version": test["features_version"],
                             **{f"{role}_macro_f1": _macro_f1(model, test["texts"], test["labels"])
                                for role, model in models.items()}}
    _judge("test split", metrics["test_split"], policy.margin, failures, passes)

    recent = _recent_window(challenger, champion, settings, policy)
    metrics["recent_window"] = {"rows": len(recent["texts"]), "dates": recent["dates"]}
    if len(recent["texts"]) >= policy.recent_min_rows:
        metrics["recent_window"].update({f"{role}_macro_f1": _macro_f1(model, recent["texts"], recent["labels"])
                                         for role, model in models.items()})
        _judge("recent window", metrics["recent_window"], policy.margin, failures, passes)
    else:
        note = (f"recent window: only {len(recent['texts'])} held-out labelled tweets "
                f"(< {policy.recent_min_rows})")
        (failures if policy.recent_required else passes).append(note + (
            ": required by the policy" if policy.recent_required else ": not compared"))

    behaviour = {role: run_behaviour_checks(lambda texts, m=model: _predict(m, texts))
                 for role, model in models.items()}
    metrics["behaviour"] = {role: {name: check["pass_rate"] for name, check in result["checks"].items()}
                            for role, result in behaviour.items()}
    missed = _behaviour_misses(behaviour, policy.behaviour_gate)
    metrics["behaviour"]["passed"] = not missed
    if missed:
        failures.append("behavioural checks: " + "; ".join(missed))
    else:
        passes.append("behavioural checks passed" + (" (no regression below threshold)"
                                                     if policy.behaviour_gate == "no_regression" else ""))
    if policy.shadow_min_hours or policy.shadow_min_tweets or policy.shadow_min_agreement is not None:
        from ml.shadow import judge_shadow

        metrics["shadow"] = judge_shadow(policy, champion, challenger, settings, failures, passes)
    action = REFUSE if failures else PROMOTE
    reason = "; ".join(failures if failures else passes)
    if failures and passes:
        reason += ". Met: " + "; ".join(passes)
    return Decision(action, settings.model_name, challenger, champion, reason, actor, now, metrics)


def _judge(what: str, scores: dict, margin: float, failures: list, passes: list) -> None:
    ours, theirs = scores["challenger_macro_f1"], scores["champion_macro_f1"]
    line = (f"{what} macro-F1 {ours:.3f} vs champion {theirs:.3f} ({ours - theirs:+.3f}, "
            f"needs {margin:+.3f}; {scores['rows']} tweets)")
    (passes if ours >= theirs + margin else failures).append(line)


def _behaviour_misses(behaviour: dict, gate: str) -> list[str]:
    misses = []
    for name, check in behaviour["challenger"]["checks"].items():
        if check["passed"]:
            continue
        champion_rate = behaviour["champion"]["checks"].get(name, {}).get("pass_rate", 1.0)
        if gate == "pass" or check["pass_rate"] < champion_rate:
            misses.append(f"{name} {check['pass_rate']:.2f} < threshold {check['threshold']:.2f}"
                          + (f" and below the champion's {champion_rate:.2f}" if gate == "no_regression" else ""))
    return misses


def _champion_version(settings: Settings) -> str | None:
    try:
        return str(model_access.resolve(settings).version)
    except model_access.NoChampionError:
        return None


def _load(version: str, settings: Settings) -> model_access.LoadedModel:
    # Cached: a later decision in the same process (the demo's) compares the same versions again.
    return model_access.load(settings, model_access.resolve(settings, version), cached=True)


def _predict(model: model_access.LoadedModel, texts: list[str]) -> list[str]:
    return model_access.predict_batches(model, texts)[0]


def _macro_f1(model, texts: list[str], labels: list[str]) -> float:
    from ml.evaluate import evaluate

    return round(float(evaluate(labels, _predict(model, texts), dataset="eval").metrics["eval_macro_f1"]), 6)


def _test_split(challenger: str, settings: Settings, policy: PromotionPolicy) -> dict:
    """The labelled test rows of the challenger's gold_features version (deduplicated, sampled)."""
    from tweetops.core.tables import open_table
    from ml import contract

    tags = model_access.lineage(settings, challenger)
    version = int(tags[contract.TAG_FEATURES_VERSION])
    table = open_table(tags[contract.TAG_FEATURES_TABLE], settings, version=version)
    frame = table.to_pyarrow_dataset().to_table(columns=["id", "text_normalized", "label", "split"]).to_pandas()
    frame = frame[(frame["split"] == "test") & frame["label"].isin(contract.LABELS)]
    frame = _sample(frame.drop_duplicates("text_normalized"), policy.test_max_rows, policy.seed)
    if frame.empty:
        raise LookupError(f"{tags[contract.TAG_FEATURES_TABLE]} version {version} has no labelled test rows: "
                          "nothing to compare the models on")
    return {"texts": frame["text_normalized"].tolist(), "labels": frame["label"].tolist(),
            "features_version": version}


def _recent_window(challenger: str, champion: str, settings: Settings, policy: PromotionPolicy) -> dict:
    """Labelled silver tweets of the newest `days` event dates that neither model can have been
    trained on (a tweet's split is fixed by its id, see ml.features.split_of)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from tweetops.core.tables import ensure_table
    from ml import contract
    from ml.features import split_of

    dataset = ensure_table("silver_tweets", settings).to_pyarrow_dataset()
    labelled = ds.field("label").isin(list(contract.LABELS))
    dates = dataset.to_table(columns=["event_date"], filter=labelled).column("event_date")
    if len(dates) == 0:
        return {"texts": [], "labels": [], "dates": None}
    newest = pc.max(dates).as_py()
    oldest = newest - timedelta(days=policy.recent_days - 1)
    frame = dataset.to_table(columns=["id", "text", "label"], filter=labelled & (
        ds.field("event_date") >= pa.scalar(oldest, pa.date32()))).to_pandas().drop_duplicates("id")
    trained_on: set[str] = set()
    for version in (challenger, champion):
        trained_on.update(model_access.training_reference(settings, version).config.data["train_splits"])
    frame = frame[~frame["id"].map(split_of).isin(trained_on)]
    frame = _sample(frame, policy.recent_max_rows, policy.seed)
    return {"texts": frame["text"].tolist(), "labels": frame["label"].tolist(),
            "dates": [oldest.isoformat(), newest.isoformat()]}


def _sample(frame, rows: int, seed: int):
    frame = frame.sort_values("id", kind="stable")
    if len(frame) > rows:
        frame = frame.sample(n=rows, random_state=seed).sort_values("id", kind="stable")
    return frame.reset_index(drop=True)


# --- moving the alias, and the log -----------------------------------------------------------------

def _apply(decision: Decision, settings: Settings) -> None:
    """Log the decision, then move the aliases and tag the version (logged first: see the module
    docstring)."""
    log_decision(decision, settings)
    _move_aliases(decision, settings)


def _move_aliases(decision: Decision, settings: Settings) -> None:
    """Point the aliases where the decision says and tag the version; safe to repeat."""
    from ml import registry
    from ml.contract import CHALLENGER, CHAMPION

    client = registry.client(settings)
    name, version = settings.model_name, decision.challenger_version
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
        challenger = registry.challenger(settings)
        if challenger is not None and str(challenger.version) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
    note = f"{decision.action} at {decision.at.isoformat(timespec='seconds')} by {decision.actor}: {decision.reason}"
    client.set_model_version_tag(name, version, TAG_PROMOTION, note[:4900])


def _logged_decision(actor: str, settings: Settings, challenger_version: str | int | None = None) -> Decision | None:
    """The decision this Airflow run already logged for the model (None for people: each command
    they run is a new decision)."""
    import pyarrow.dataset as ds

    from tweetops.core.tables import open_table

    if not actor.startswith("airflow:"):
        return None
    try:
        dataset = open_table(LOG_TABLE, settings).to_pyarrow_dataset()
    except LookupError:
        return None
    mine = (ds.field("actor") == actor) & (ds.field("model_name") == settings.model_name)
    if challenger_version is not None:
        mine &= ds.field("to_version") == str(challenger_version)
    rows = dataset.to_table(filter=mine).to_pylist()
    if not rows:
        return None
    row = max(rows, key=lambda r: r["at"])
    return Decision(row["action"], row["model_name"], row["to_version"], row["from_version"], row["reason"],
                    row["actor"], row["at"], json.loads(row["metrics"] or "{}"))


def log_decision(decision: Decision, settings: Settings | None = None) -> None:
    """Append the decision to gold_promotion_log. A rerun of the same Airflow run replaces its own
    row for that version instead of appending a second one."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from tweetops.core.delta_replace import equals_predicate, replace_rows
    from tweetops.core.tables import ensure_table, spec

    settings = settings or load_settings()
    row = {"at": decision.at, "actor": decision.actor, "action": decision.action,
           "model_name": decision.model_name, "from_version": decision.champion_version,
           "to_version": decision.challenger_version,
           "metrics": json.dumps(decision.metrics, sort_keys=True, default=str), "reason": decision.reason}
    table = ensure_table(LOG_TABLE, settings)
    batch = pa.Table.from_pylist([row], schema=spec(LOG_TABLE).schema)
    if decision.actor.startswith("airflow:"):
        replace_rows(table, batch, equals_predicate(actor=decision.actor, to_version=decision.challenger_version))
    else:
        write_deltalake(table, batch, mode="append")


def set_champion(version: str | int, settings: Settings | None = None, actor: str | None = None,
                 reason: str | None = None) -> Decision:
    """Point the champion alias at `version` by hand (a rollback when it is older), and log it."""
    settings = settings or load_settings()
    target = str(model_access.resolve(settings, version).version)
    current = _champion_version(settings)
    actor = actor or default_actor()
    now = datetime.now(timezone.utc)
    if current == target:
        return Decision(NOOP, settings.model_name, target, current, f"v{target} already is the champion", actor, now)
    action = ROLLBACK if current is not None and int(target) < int(current) else MANUAL_PROMOTE
    decision = Decision(action, settings.model_name, target, current,
                        reason or f"set by hand with `tweetops promote --version {target}`", actor, now)
    _apply(decision, settings)
    return decision


def promotion_log(settings: Settings | None = None, limit: int | None = None):
    """The promotion log as a DataFrame, newest first."""
    from tweetops.core.tables import ensure_table

    frame = ensure_table(LOG_TABLE, settings or load_settings()).to_pandas()
    frame = frame.sort_values("at", ascending=False, kind="stable").reset_index(drop=True)
    return frame.head(limit) if limit else frame


# --- CLI -----------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--version", metavar="N", help="make version N the champion now (rollback), logged")
    what.add_argument("--challenger", action="store_true",
                      help="apply the promotion policy to the challenger (promote it only if better)")
    what.add_argument("--log", action="store_true", help="show the promotion log, newest first")
    parser.add_argument("--reason", help="why (recorded in the promotion log with --version)")
    parser.add_argument("--policy", type=Path, default=None,
                        help="promotion policy file (default: ml/policy/promotion.yaml)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    """Exit status: 0 champion set or promoted, 1 challenger refused, 2 bad arguments, 3 nothing to act on."""
    settings = load_settings()
    if args.log:
        frame = promotion_log(settings, limit=50)
        if args.json:
            print(frame.to_json(orient="records", date_format="iso"))
        elif frame.empty:
            print(f"{LOG_TABLE} is empty: no promotion, refusal or rollback yet")
        else:
            for row in frame.itertuples():
                print(f"{row.at:%Y-%m-%d %H:%M:%S} {row.action:<14} v{row.from_version} -> v{row.to_version} "
                      f"by {row.actor}: {row.reason}")
        return 0
    try:
        if args.version is not None:
            if not str(args.version).isdigit():
                print(f"tweetops promote: --version {args.version!r}: expected a version number, e.g. --version 3")
                return 2
            decision = set_champion(args.version, settings, reason=args.reason)
        else:
            decision = decide_promotion(None, settings, policy=load_policy(args.policy))
    except PolicyError as exc:
        print(f"tweetops promote: {exc}")
        return 2
    except LookupError as exc:
        print(f"tweetops promote: {exc}")
        return 3
    print(json.dumps(decision.as_dict(), indent=2, default=str) if args.json else decision.message())
    return 1 if decision.action == REFUSE else 0
