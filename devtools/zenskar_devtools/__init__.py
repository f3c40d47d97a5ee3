"""Development and test tools for zenskar-pipeline: the local warehouse, the demo, `make dev`."""
