"""The tweets topic: created with the configured partition count if it does not exist."""
from __future__ import annotations

import logging

from tweetops.core.settings import Settings, load_settings


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


def topic_id(settings: Settings, topic: str) -> str | None:
    """The topic's Kafka topic id (a new one each time the topic is created); None if the broker has none."""
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    try:
        description = admin.describe_topics(TopicCollection([topic]), request_timeout=15)[topic].result(timeout=20)
    except Exception as exc:  # noqa: BLE001 - a broker without DescribeTopics: only the end-of-topic check is left
        logging.getLogger("tweetops.ingest").warning("could not read the topic id of %s: %s", topic, exc)
        return None
    found = str(description.topic_id) if description.topic_id is not None else ""
    return None if not found or found == "AAAAAAAAAAAAAAAAAAAAAA" else found  # the zero id: brokers before Kafka 2.8
