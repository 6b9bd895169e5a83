"""The delivery service: pipelines delivered from durable cursors (service, consumer, cursors, worker)."""
