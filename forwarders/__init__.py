"""Forwarding pipelines (filters and sinks) fed by every change Elasticsearch accepted."""
