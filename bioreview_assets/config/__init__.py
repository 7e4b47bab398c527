"""Configuration, its one home: the environment (env.py), the config models (model.py, project.py, k8s.py), the one
reader of configs/ (loader.py), the system registry (systems.py) and the cross-checks (checks.py)."""
