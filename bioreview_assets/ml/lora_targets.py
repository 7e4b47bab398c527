"""Which modules LoRA wraps, per architecture: resolved from the config, checked on the wrapped model (W20).

Hybrid models (Qwen3.5: Gated DeltaNet linear-attention layers beside full-attention ones) name their projections
differently per layer type, so a target list says on purpose which of them get LoRA; vision-language checkpoints
(Gemma-4) carry q_proj/.../down_proj in their vision tower too, so `scope: language_model` keeps LoRA on the text
decoder. Adapters are loaded with `load_adapter_checked`: a tensor that finds no module is an error, not a warning.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # settings pulls pydantic: keep this module importable on a bare GPU box (benchmarks)
    from bioreview_assets.config.model import LoraConfigSpec

# Module-name segments of the non-language towers of vision/audio-language checkpoints.
MULTIMODAL_PARTS = ("visual", "vision_tower", "vision_model", "audio_tower", "embed_vision", "embed_audio",
                    "multi_modal_projector")


class LoraTargetError(ValueError):
    """LoRA did not wrap what the config asked for (a target matched nothing, or a module was left out)."""


class AdapterMismatchError(ValueError):
    """An adapter's tensors do not all find their module in the base model (or some modules have none)."""


def is_language_module(name: str) -> bool:
    """True unless the module sits in a vision/audio tower."""
    return not any(part in MULTIMODAL_PARTS for part in name.split("."))


def peft_target_modules(spec: "LoraConfigSpec") -> list[str] | str:
    """peft's target_modules: leaf names (suffix match), or a full-match regex limited to the language model."""
    if spec.scope == "all":
        return list(spec.target_modules)
    leaves = "|".join(re.escape(name) for name in spec.target_modules)
    towers = "|".join(MULTIMODAL_PARTS)
    return rf"^(?!(?:.*\.)?(?:{towers})\.).*\.(?:{leaves})$"


def _unwrapped_name(name: str) -> str:
    return name.removeprefix("base_model.model.")


def check_lora_coverage(model, spec: "LoraConfigSpec") -> None:
    """Raise unless every in-scope projection named by the config is wrapped, and nothing out of scope is."""
    from peft.tuners.lora import LoraLayer

    targets = set(spec.target_modules)
    wrapped: set[str] = set()
    candidates: set[str] = set()
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(module, LoraLayer):
            wrapped.add(_unwrapped_name(name))
        elif leaf in targets and ".lora_" not in name and not name.endswith(".base_layer"):
            candidates.add(_unwrapped_name(name))
    in_scope = (lambda name: True) if spec.scope == "all" else is_language_module
    outside = sorted(name for name in wrapped if not in_scope(name))
    missing = sorted(name for name in candidates if in_scope(name) and name not in wrapped)
    unmatched = sorted(targets - {name.rsplit(".", 1)[-1] for name in wrapped})
    problems = []
    if unmatched:
        problems.append(f"targets {unmatched} matched no module")
    if missing:
        problems.append(f"{len(missing)} {spec.scope} projections were left unwrapped, e.g. {missing[:3]}")
    if outside:
        problems.append(f"{len(outside)} modules outside the language model were wrapped, e.g. {outside[:3]}")
    if problems:
        raise LoraTargetError("LoRA targets do not resolve as configured: " + "; ".join(problems))


def load_adapter_checked(base, adapter_dir: Path | str):
    """PeftModel of base + the saved adapter; raises when an adapter tensor matched no module (or one got none)."""
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors import safe_open

    model = PeftModel.from_pretrained(base, str(adapter_dir))
    with safe_open(str(Path(adapter_dir) / "adapter_model.safetensors"), framework="pt") as handle:
        saved = set(handle.keys())
    loaded = set(get_peft_model_state_dict(model).keys())
    unmatched, empty = sorted(saved - loaded), sorted(loaded - saved)
    if unmatched or empty:
        raise AdapterMismatchError(
            f"adapter {adapter_dir} does not fit its base model: {len(unmatched)} tensors matched no module "
            f"(e.g. {unmatched[:3]}), {len(empty)} wrapped modules got no tensor (e.g. {empty[:3]}). Was it trained "
            "on another architecture or module layout?"
        )
    return model
