"""Practice exercises on a lab: break it on purpose, check the goals, show the fix."""
