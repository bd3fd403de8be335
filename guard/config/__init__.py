"""rules.yaml: schema (pydantic, at the edge) and a loader that reports file, line and field."""
