"""The tiny random Qwen3 and its LoRA adapter, shared with the ml tests (publishing copies a real adapter)."""

from bioreview_assets_tests.ml.conftest import adapter_dir, tiny_dir  # noqa: F401
