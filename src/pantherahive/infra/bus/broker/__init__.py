"""The broker side of the bus: the relay (outbox -> broker), the worker base that runs
consumers on durable subscriptions, its NATS JetStream and Kafka implementations, and the
factory that picks one by ``BUS_URL``."""
