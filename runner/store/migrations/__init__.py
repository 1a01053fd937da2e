"""Alembic's migration history of runner's database: the results and schedule stores."""
