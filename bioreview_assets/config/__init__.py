"""Pydantic models of the YAML files under configs/ that settings.py loads (settings.py holds the rest)."""
