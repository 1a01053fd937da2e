"""runner: a network-automation job runner for device fleets."""

__version__ = "0.1.0"
