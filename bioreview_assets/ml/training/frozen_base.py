"""The frozen base under LoRA swapped for an 8-bit linear (training.quantization fp8, nf4-fp8, nf4-int8).

Its own module because it knows both 8-bit paths (fp8.py, int8.py), and int8.py builds on fp8.py's NF4 storage.
"""

from __future__ import annotations

import logging

import torch

from .fp8 import FP8FrozenLinear, NF4FP8FrozenLinear, check_fp8_device
from .int8 import NF4Int8FrozenLinear, check_int8_device

log = logging.getLogger(__name__)

# NF4-stored modes -> (the linear that replaces a Linear4bit, the device check of its matmuls)
NF4_LINEARS = {"nf4-fp8": (NF4FP8FrozenLinear, check_fp8_device), "nf4-int8": (NF4Int8FrozenLinear, check_int8_device)}


def convert_base_linears_to_fp8(model, storage: str = "e4m3") -> int:
    """Replace the frozen base linear of every LoRA layer in the decoder by an FP8 one; return how many.

    storage "e4m3": FP8FrozenLinear from a plain nn.Linear. storage "nf4": NF4FP8FrozenLinear from the NF4
    Linear4bit that the nf4 loader made (its bytes are kept); a plain nn.Linear there is one the loader left in bf16
    (quantization_skip_modules) and stays so.
    """
    if storage not in ("e4m3", "nf4"):
        raise ValueError(f"FP8 base: storage must be 'e4m3' or 'nf4', got {storage!r}")
    return convert_base_linears(model, "fp8" if storage == "e4m3" else "nf4-fp8")


def convert_base_linears(model, quantization: str) -> int:
    """Replace the frozen base linear of every LoRA layer by the 8-bit linear of `quantization`; return how many.

    fp8: FP8FrozenLinear from a plain nn.Linear. nf4-fp8 / nf4-int8: the NF4 Linear4bit that the nf4 loader made
    becomes NF4FP8FrozenLinear / int8.NF4Int8FrozenLinear (its bytes are kept); a plain nn.Linear there is one the
    loader left in bf16 (quantization_skip_modules) and stays so.
    Runs after peft has wrapped the model, so peft never sees an 8-bit weight (it would cast the LoRA weights to the
    base weight's dtype). lm_head and embeddings stay in the compute dtype. The replaced weight is freed layer by layer.
    """
    from peft.tuners.lora import LoraLayer

    if quantization != "fp8" and quantization not in NF4_LINEARS:
        raise ValueError(f"8-bit base: quantization must be fp8, nf4-fp8 or nf4-int8, got {quantization!r}")
    converted = kept_bf16 = 0
    for module in model.modules():
        if not isinstance(module, LoraLayer):
            continue
        base = module.base_layer
        if quantization == "fp8":
            check_fp8_device(base.weight.device)
            if type(base) is not torch.nn.Linear:
                raise TypeError(f"FP8 base: expected a plain nn.Linear under LoRA, got {type(base).__name__}")
            module.base_layer = FP8FrozenLinear.from_linear(base)
        else:
            linear_class, check_device = NF4_LINEARS[quantization]
            check_device(base.weight.device)
            if type(base) is torch.nn.Linear:
                kept_bf16 += 1  # left out of NF4 by quantization_skip_modules: it stays as the user asked
                continue
            if type(base).__name__ != "Linear4bit":
                raise TypeError(f"{quantization} base: expected an NF4 Linear4bit (or a skipped nn.Linear) under "
                                f"LoRA, got {type(base).__name__}")
            module.base_layer = linear_class.from_linear(base)
        del base
        converted += 1
    matmuls = "INT8" if quantization in ("nf4-int8",) else "FP8"
    if not converted:
        raise RuntimeError(f"{matmuls} base: every LoRA base is a linear that quantization_skip_modules keeps in bf16: "
                           f"nothing to multiply in {matmuls} (use quantization: none)" if kept_bf16 else
                           f"{matmuls} base: no LoRA layer found to convert (wrap the model in LoRA first)")
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    log.info("%s base: %d frozen linears stored in %s, multiplied in %s with row-wise scales%s", matmuls, converted,
             "e4m3" if quantization == "fp8" else "NF4", "e4m3" if matmuls == "FP8" else "int8 (int32 accumulation)",
             f"; {kept_bf16} skipped by quantization_skip_modules stay bf16" if kept_bf16 else "")
    return converted
