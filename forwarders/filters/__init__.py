"""Field filters: pure functions from a document to a document (see base.py)."""
