"""Drift checks and the promotion gate: seconds per drift check (with and without MiniLM embeddings),
the scores on unseen same-topic tweets vs tweets about other topics, retraining and the decision;
then the verdict's error rates (tweetops.app.drift_scenario.run_verdict_benchmark): the false-alarm rate on
same-distribution windows before and after a retrain on mixed topics, and the detection rate of
real shifts (new topics, a label-mix shift, a text-length shift). The verdict benchmark runs
without the embeddings check (MiniLM on hundreds of windows takes too long on a laptop).

Self-contained: starts its own MLflow server and lakehouse under TWEETOPS_HOME/bench/ and runs
tweetops.app.drift_scenario.run_drift_scenario on real corpus tweets; everything it started is stopped.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trained-rows", type=int, default=4000, help="airline tweets the champion trains on")
    parser.add_argument("--new-rows", type=int, default=3000, help="tweets in each checked window")
    parser.add_argument("--config", default="baseline", help="model variant (ml/configs) for both models")
    parser.add_argument("--no-embeddings", action="store_true", help="skip the MiniLM embeddings check")
    parser.add_argument("--windows", type=int, default=50,
                        help="windows per case in the false-alarm and detection benchmark (0: skip it)")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark's state for inspection")


def measure(args: argparse.Namespace) -> dict:
    from ml.drift import load_drift_config
    from tweetops.app.drift_scenario import run_drift_scenario, run_verdict_benchmark
    from tweetops.app import stack
    from tweetops.core.settings import load_settings

    base = load_settings()
    home = base.home / "bench" / f"drift-{int(time.time())}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = load_settings({**os.environ, "TWEETOPS_HOME": str(home),
                              "TWEETOPS_LAKEHOUSE_URI": str(home / "lakehouse"),
                              "TWEETOPS_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
                              "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    print(f"benchmark state under {home}", flush=True)
    stack.up(settings, only=["mlflow"])
    try:
        config = load_drift_config(None, {"embeddings.enabled": not args.no_embeddings})
        figures = run_drift_scenario(settings, args.trained_rows, args.new_rows, args.config, config)
        if args.windows > 0:
            verdict_settings = load_settings({**settings.as_env(), "TWEETOPS_MODEL_NAME": "bench-verdict",
                                              "TWEETOPS_LAKEHOUSE_URI": str(home / "lakehouse-verdict")})
            figures["verdict"] = run_verdict_benchmark(
                verdict_settings, args.windows, args.trained_rows, config=args.config,
                drift_config=load_drift_config(None, {"embeddings.enabled": False}))
            figures.update(false_alarm_rate=figures["verdict"]["false_alarm_rate"],
                           topic_shift_detection_rate=figures["verdict"]["topic_shift_detection_rate"],
                           label_mix_shift_detection_rate=figures["verdict"]["shift_label_mix"]["rate"],
                           text_length_shift_detection_rate=figures["verdict"]["shift_text_length"]["rate"],
                           verdict_aims_met=figures["verdict"]["aims_met"])
    finally:
        stack.down(settings)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    figures.update(embeddings=not args.no_embeddings, trained_rows=args.trained_rows, new_rows=args.new_rows,
                   sample_rows=config.sample_rows, embeddings_sample_rows=config.embeddings["sample_rows"],
                   cpu_cores=os.cpu_count())
    return figures
