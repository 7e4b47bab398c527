"""Configuration, its one home: the environment (env.py), the config models (model.py, project.py, k8s.py), the
system registry (systems.py), the immutable ConfigSnapshot (snapshot.py) and the one reader of configs/ (loader.py)."""
