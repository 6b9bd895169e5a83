"""Elasticsearch side: index layout, role-separated documents, versioned writes."""
