"""Prometheus metrics of the ingest consumer, served on `tweetops ingest --metrics-port`."""
from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY):
        self.registry = registry
        self.messages = Counter("tweetops_ingest_messages", "Kafka messages consumed (before decoding)",
                                ["topic"], registry=registry)
        self.rows = Counter("tweetops_ingest_rows_landed", "Rows committed to a bronze table",
                            ["topic", "table"], registry=registry)
        self.dead_letters = Counter("tweetops_ingest_dead_letters", "Messages landed as dead letters, by reason",
                                    ["topic", "reason"], registry=registry)
        self.batches = Counter("tweetops_ingest_batches", "Batches committed", ["topic"], registry=registry)
        self.batch_seconds = Histogram(
            "tweetops_ingest_batch_seconds", "Seconds to decode and commit one batch", ["topic"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=registry)
        self.lag = Gauge("tweetops_ingest_lag_messages",
                         "Messages behind the fetch high watermark, per partition (assigned partitions only)",
                         ["topic", "partition"], registry=registry)
        self.lost_to_retention = Counter(
            "tweetops_ingest_lost_to_retention_messages",
            "Messages deleted by the topic's retention before they were landed (the consumer skipped to the log start)",
            ["topic", "partition"], registry=registry)
        self.last_commit = Gauge("tweetops_ingest_last_commit_timestamp_seconds",
                                 "Unix time of the last batch commit", ["topic"], registry=registry)


_metrics: IngestMetrics | None = None


def ingest_metrics() -> IngestMetrics:
    """The process-wide metrics (prometheus_client refuses to register the same name twice)."""
    global _metrics
    if _metrics is None:
        _metrics = IngestMetrics()
    return _metrics


def serve_metrics(port: int, host: str = "127.0.0.1"):
    """Serve /metrics in a background thread; returns the server (call .shutdown() to stop)."""
    server, _thread = start_http_server(port, addr=host, registry=ingest_metrics().registry)
    return server
