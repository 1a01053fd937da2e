"""Scheduling: triggers (cron, interval, at), firing policies, and `runner serve`."""
