"""Decoding parameters shared by every generation backend, and their defaults (the generation config's too).

Standard library only: the backends use it on GPU boxes without pydantic. config/model.py's GenerationConfig takes its
sampling defaults from here, so a model config and a backend built without one never decode differently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The fields a model's generation config sets (configs/models/*.yaml generation:); the others are benchmark-only.
CONFIG_FIELDS = ("max_new_tokens", "temperature", "top_p", "repetition_penalty", "seed")


@dataclass(frozen=True)
class SamplingSpec:
    """Decoding parameters shared by all backends; temperature 0 means greedy."""

    max_new_tokens: int = 4096
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.05
    seed: int = 0
    # Benchmarks only: generate exactly max_new_tokens whatever the model says (throughput runs on random weights).
    ignore_eos: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    @classmethod
    def from_config(cls, gen) -> "SamplingSpec":
        """The decoding parameters of a model's generation config (config/model.py's GenerationConfig)."""
        return cls(**{name: getattr(gen, name) for name in CONFIG_FIELDS})

    def describe(self) -> dict[str, Any]:
        out = asdict(self)
        out["greedy"] = self.greedy
        if self.greedy:  # top_p/seed do not act on greedy decoding; say so rather than imply they do
            out["top_p"] = None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SamplingSpec":
        keys = {*CONFIG_FIELDS, "ignore_eos", "extra"}
        clean = {k: v for k, v in data.items() if k in keys}
        if clean.get("top_p") is None:
            clean["top_p"] = 1.0
        return cls(**clean)


DEFAULT_SAMPLING = SamplingSpec()
