"""The fleet simulator: many emulated IOS-style devices served over SSH by one process."""
