"""Sinks: where a pipeline's envelopes leave (see base.py); one folder per sink."""
