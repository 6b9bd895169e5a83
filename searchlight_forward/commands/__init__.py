"""Console scripts (see setup.cfg)."""
