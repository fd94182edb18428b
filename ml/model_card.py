"""The model card logged with every model version: purpose, data, metrics, limits, known biases."""
from __future__ import annotations

from ml.contract import LABELS


def render_model_card(*, model_name: str, config, lineage: dict[str, str], data_summary: dict,
                      evaluations: dict, behaviour: dict, training: dict, classifier=None) -> str:
    """Markdown. `evaluations` maps a split name to its ml.evaluate.Evaluation; `classifier` (the
    fitted ml.models classifier) adds its most influential n-grams per class when it is linear."""
    test = evaluations["test"]
    train_counts = data_summary["splits"].get("train", {})
    total = max(1, train_counts.get("total", 0))
    balance = ", ".join(f"{label} {train_counts.get(label, 0) / total:.0%}" for label in LABELS)
    weakest = min(LABELS, key=lambda label: test.report[label]["recall"])
    lines = [
        f"# Model card: {model_name} ({config.name})",
        "",
        "## Purpose",
        "Three-class sentiment (negative, neutral, positive) of English tweets about brands and products, "
        "for monitoring how customers talk about airlines, phones, search and self-driving cars. "
        "Input: raw tweet text; the model normalises it itself (tweetops.core.text.normalize_text). "
        "Output: a label and one probability per class. Not for decisions about individual people.",
        "",
        f"Model type: `{config.model_type}`. {config.description}".strip(),
        "",
        "## Lineage",
        "| what | value |",
        "| --- | --- |",
        *[f"| {k} | `{v}` |" for k, v in sorted(lineage.items())],
        "",
        "## Data",
        f"Features table `{lineage.get('tweetops.features_table')}` at Delta version "
        f"{lineage.get('tweetops.features_version')}: {data_summary['rows_read']} rows read, "
        f"{data_summary['rows_labelled']} labelled, {data_summary['rows_after_dedup']} after removing duplicate "
        "texts (a text sits in one split only). Splits come from a hash of the tweet id and never move.",
        "",
        "| split | tweets | " + " | ".join(LABELS) + " |",
        "| --- | --- | " + " | ".join("---" for _ in LABELS) + " |",
        *[f"| {split} | {counts['total']} | " + " | ".join(str(counts.get(label, 0)) for label in LABELS) + " |"
          for split, counts in data_summary["splits"].items()],
        "",
        "Topics in the training data: " + ", ".join(f"{topic} {share:.0%}" for topic, share in
                                                    data_summary.get("topics", {}).items()) + ".",
        f"Fitted on: {', '.join(config.data['train_splits'])}. Data window: "
        f"{'all event dates' if not config.data['window_days'] else str(config.data['window_days']) + ' newest days'}.",
        "",
        "## Metrics (fixed test split)",
        f"Accuracy {test.metrics['test_accuracy']:.4f}, macro precision {test.metrics['test_macro_precision']:.4f}, "
        f"macro recall {test.metrics['test_macro_recall']:.4f}, **macro-F1 {test.metrics['test_macro_f1']:.4f}** "
        f"on {test.support} tweets.",
        "",
        "| class | precision | recall | F1 | support |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {label} | {test.report[label]['precision']:.3f} | {test.report[label]['recall']:.3f} | "
          f"{test.report[label]['f1-score']:.3f} | {int(test.report[label]['support'])} |" for label in LABELS],
        "",
        "Confusion matrix: `confusion_matrix.png` in the run's artifacts.",
        "",
        "## Behavioural checks",
        f"Overall: **{'passed' if behaviour['passed'] else 'FAILED'}**.",
        "",
        "| check | pass rate | threshold | result | gating |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {name} | {c['pass_rate']:.0%} ({c['n']} cases) | {c['threshold']:.0%} | "
          f"{'pass' if c['passed'] else 'FAIL'} | {'yes' if c['gating'] else 'no (reported)'} |"
          for name, c in behaviour["checks"].items()],
        "",
        *_behaviour_failures(behaviour),
        *_influential_features(classifier),
        "## Training",
        ", ".join(f"{k}: {v}" for k, v in training.items()) + ".",
        "",
        "## Limits",
        "- English only; trained on 2014-2016 tweets (airlines, Apple, Google, self-driving cars, assorted topics): "
        "slang, products and events after that are unseen.",
        "- Labels come from crowd workers with moderate agreement: about one tweet in five is ambiguous even "
        "for people, so expect errors near the neutral boundary.",
        "- Sarcasm, irony and negation are often missed: bag-of-n-gram models flip only some negated "
        "positives (see the negation check above).",
        "- Tweets of other topics than the training mix drift away from it: watch the drift reports.",
        "",
        "## Known biases",
        f"- Class balance of the training split: {balance}. Weakest class on the test split: {weakest} "
        f"(recall {test.report[weakest]['recall']:.2f}): the model under-calls it.",
        f"- Airline tweets are {data_summary.get('topics', {}).get('airline', 0):.0%} of the data and mostly "
        "complaints: mentions of airlines lean negative regardless of content; other topics lean neutral.",
        "- Mentions, URLs and numbers are replaced by tokens, so the model cannot use who is addressed "
        "(intended: it should not judge by the account), but retweet-style news headlines read as neutral.",
        "",
    ]
    return "\n".join(lines)


def _behaviour_failures(behaviour: dict) -> list[str]:
    """Every failed case, so a reader sees which tweets the model gets wrong and how."""
    failures = [(name, f) for name, check in behaviour["checks"].items() for f in check.get("failures", [])]
    if not failures:
        return ["No behavioural case failed.", ""]
    return ["Failed cases:", "",
            "| check | tweet | expected | got |", "| --- | --- | --- | --- |",
            *[f"| {name}{' (' + f['perturbation'] + ')' if f.get('perturbation') else ''} | "
              f"{_cell(f['text'])} | {f['expected']} | {f['got']} |" for name, f in failures], ""]


def _influential_features(classifier) -> list[str]:
    """Per class, the word n-grams that push hardest towards and away from it (linear models only):
    a brand or a name here means the model judges by it rather than by what is said."""
    if classifier is None:
        return []
    from ml.explain import influential_features

    table = influential_features(classifier, top_k=12)
    if table is None:
        return ["## Most influential features",
                "Not listed for this model type: ask `tweetops explain` (occlusion) about individual tweets.", ""]
    lines = ["## Most influential features",
             "Word n-grams with the largest logistic-regression coefficients per class (a feature's push on one "
             "tweet is its TF-IDF value times this; `tweetops explain` shows it per tweet).", "",
             "| class | towards it | away from it |", "| --- | --- | --- |"]
    for label in LABELS:
        if label in table:
            towards = ", ".join(f"`{_cell(f)}` {c:+.2f}" for f, c in table[label]["towards"])
            away = ", ".join(f"`{_cell(f)}` {c:+.2f}" for f, c in table[label]["away"])
            lines.append(f"| {label} | {towards} | {away} |")
    return lines + [""]


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
