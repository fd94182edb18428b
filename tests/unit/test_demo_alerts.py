"""The demo's summary of the Slack alerts: a title per alert, then where to look (its TweetOps page,
Data Docs page, drift report) and, for a promotion decision, its reason."""
import json

from tweetops.app import demo
from tweetops.core.settings import load_settings


def test_alerts_show_their_title_links_and_decision_reason(tmp_path, capsys):
    settings = load_settings({"TWEETOPS_HOME": str(tmp_path)})
    slack = settings.stack_dir / "slack"
    slack.mkdir(parents=True)
    texts = [
        ":rotating_light: Quality gate failed: tweetops_quality_gate, interval 2026-12-01 to 2026-12-02\n"
        "40 of 400 rows quarantined\nAirflow run: http://127.0.0.1:8080/x\n"
        "TweetOps quality page: http://127.0.0.1:8080/tweetops/quality?run=x\n"
        "Data Docs: http://127.0.0.1:8080/tweetops/docs/page.html",
        ":warning: Drift detected in silver tweets\n• oov_share: 2.6 >= threshold 0.2\nReport: http://127.0.0.1:8080/tweetops/reports/drift.html",
        ":no_entry: Challenger refused: tweetops-sentiment v3 (champion was v2)\n"
        "test split macro-F1 0.776 vs champion 0.776 (+0.000, needs +0.005)\nBy airflow:tweetops_promotion/x",
    ]
    (slack / "messages.jsonl").write_text("".join(json.dumps({"payload": {"text": t}}) + "\n" for t in texts))

    demo._show_alerts(settings, demo.Story())
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]

    assert lines[0] == "Slack alerts received by the local webhook receiver: 3"
    assert lines[1:] == [
        ":rotating_light: Quality gate failed: tweetops_quality_gate, interval 2026-12-01 to 2026-12-02",
        "TweetOps quality page: http://127.0.0.1:8080/tweetops/quality?run=x",
        "Data Docs: http://127.0.0.1:8080/tweetops/docs/page.html",
        ":warning: Drift detected in silver tweets",
        "Report: http://127.0.0.1:8080/tweetops/reports/drift.html",
        ":no_entry: Challenger refused: tweetops-sentiment v3 (champion was v2)",
        "test split macro-F1 0.776 vs champion 0.776 (+0.000, needs +0.005)",
    ]
