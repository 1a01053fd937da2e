"""One module per revision; the first is the baseline of the schema before migrations."""
