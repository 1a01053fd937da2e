"""Twins: a lab copy of production built from its config backups (`runner twin ...`)."""
