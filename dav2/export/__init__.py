"""Exporting checkpoints to deployable artifacts, each with its metadata sidecar."""
