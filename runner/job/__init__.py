"""Job files: the YAML model, loading with line-accurate errors, and the published schema."""
