"""`bioreview doctor`: checks this machine against the configs it will run, before any work starts.

facts.py probes the machine (the only part that imports torch), plan.py estimates each model's GPU memory from its
architecture and config, diagnose.py turns both into findings (pure: tested with faked facts), report.py prints them.
"""
