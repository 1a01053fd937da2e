"""The results store: every table, query and migration; the only place SQL is written."""
