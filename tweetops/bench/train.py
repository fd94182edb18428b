"""Train time, test macro-F1, throughput and latency of the baseline and MiniLM on the full corpus.

Train time and macro-F1 on the fixed test split of the full corpus for the baseline and the
fine-tuned MiniLM (under a stated time budget), then prediction throughput and single-tweet
latency of each through the same predict path as the served pyfunc (raw text in).

Features come straight from the corpus through ml.features.feature_frame (the Spark job's code,
without Spark); deduplication and splits are training's own (ml.train).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default="baseline,minilm",
                        help="comma-separated configs in ml/configs to benchmark (default: baseline,minilm)")
    parser.add_argument("--minilm-minutes", type=float, default=10.0,
                        help="time budget for fitting each transformer config (default: 10)")
    parser.add_argument("--limit", type=int, default=None, help="use a stable sample of N corpus tweets")
    parser.add_argument("--latency-samples", type=int, default=200, help="single-tweet predictions timed")


def measure(args: argparse.Namespace) -> dict:
    import pandas as pd

    from ml.config import load_config
    from ml.features import feature_frame
    from ml.pyfunc import predict_frame
    from ml.train import TrainingData, deduplicate, fit_and_evaluate
    from tweetops.core.corpus import load_corpus

    tweets = pd.DataFrame(load_corpus()).sort_values("id", kind="stable").reset_index(drop=True)
    if args.limit:
        tweets = tweets.head(args.limit)
    tweets["event_date"] = pd.to_datetime(tweets["created_at"], utc=True).dt.date
    started = time.perf_counter()
    features = feature_frame(tweets)
    feature_seconds = time.perf_counter() - started
    frame = deduplicate(features[features["label"].notna()])
    data = TrainingData(frame, "corpus", -1, {})
    raw_text = tweets.set_index("id")["text"]
    test_raw = raw_text.loc[data.split("test")["id"]].tolist()
    sizes = {s: int((frame["split"] == s).sum()) for s in ("train", "validation", "test")}
    print(f"corpus: {len(tweets)} tweets, {len(frame)} unique labelled texts {sizes}; "
          f"features in {feature_seconds:.1f} s ({len(tweets) / feature_seconds:.0f} tweets/s, pandas, 1 core)")

    figures: dict = {"cpu_cores": os.cpu_count(), "tweets": len(tweets), **{f"{k}_rows": v for k, v in sizes.items()},
                     "feature_tweets_per_s": round(len(tweets) / feature_seconds, 1)}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        overrides = {}
        config = load_config(name)
        if config.model_type == "transformer":
            overrides = {"budget.max_minutes": args.minilm_minutes}
            config = load_config(name, overrides)
        fitted = fit_and_evaluate(config, data, log=lambda *a: print(*a, flush=True))
        m = fitted.metrics
        predict_frame(fitted.classifier, test_raw[:64])  # warm up
        started = time.perf_counter()
        predict_frame(fitted.classifier, test_raw)
        throughput = len(test_raw) / (time.perf_counter() - started)
        latencies = []
        for text in test_raw[:args.latency_samples]:
            started = time.perf_counter()
            predict_frame(fitted.classifier, [text])
            latencies.append((time.perf_counter() - started) * 1000)
        latencies.sort()
        result = {
            "train_seconds": fitted.training["train_seconds"],
            "test_macro_f1": round(m["test_macro_f1"], 4),
            "test_accuracy": round(m["test_accuracy"], 4),
            "validation_macro_f1": round(m.get("validation_macro_f1", float("nan")), 4),
            "behaviour_passed": bool(fitted.behaviour["passed"]),
            "predict_tweets_per_s": round(throughput, 1),
            "latency_ms_p50": round(statistics.median(latencies), 2),
            "latency_ms_p95": round(latencies[int(0.95 * (len(latencies) - 1))], 2),
        }
        if config.model_type == "transformer":
            result.update({"budget_minutes": args.minilm_minutes, "steps": fitted.training.get("steps"),
                           "epochs": fitted.training.get("epochs"), "device": fitted.training.get("device")})
        print(f"{name}: train {result['train_seconds']:.0f} s, test macro-F1 {result['test_macro_f1']:.4f} "
              f"(accuracy {result['test_accuracy']:.4f}), {result['predict_tweets_per_s']:.0f} tweets/s, "
              f"single tweet p50 {result['latency_ms_p50']:.1f} ms / p95 {result['latency_ms_p95']:.1f} ms, "
              f"behaviour {'passed' if result['behaviour_passed'] else 'FAILED'}", flush=True)
        figures.update({f"{name}_{key}": value for key, value in result.items()})
    return figures
