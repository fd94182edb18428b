"""The tweets topic: created with the configured partition count if it does not exist."""
from __future__ import annotations

from tweetops.settings import Settings, load_settings


def ensure_topic(settings: Settings | None = None, topic: str | None = None, partitions: int | None = None) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    settings = settings or load_settings()
    topic = topic or settings.topic
    admin = AdminClient({**settings.kafka_client_config(), "bootstrap.servers": settings.kafka_bootstrap})
    if topic in admin.list_topics(timeout=10).topics:
        return
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions or settings.topic_partitions,
                                            replication_factor=1)])
    for future in futures.values():
        try:
            future.result(timeout=15)
        except Exception as exc:  # a concurrent creator won the race: fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
