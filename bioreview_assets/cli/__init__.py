"""Entry points: the `bioreview` command (main.py), the demo, the run summary."""
