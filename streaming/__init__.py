"""Streaming: the tweet schema, the producer and the exactly-once Kafka-to-Delta consumer."""
