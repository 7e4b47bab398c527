"""The groups of training.quantization values that the loader, trainer, publisher and model card ask about.

Plain constants, no imports: the GPU benchmark path reads them where neither pydantic nor Dagster is installed.
"""

NF4_STORED = frozenset({"nf4", "nf4-fp8", "nf4-int8"})  # the frozen base is bitsandbytes NF4 (loaded, evaluated, published so)
FP8_MATMULS = frozenset({"fp8", "nf4-fp8"})  # the frozen base is multiplied in FP8 (compute capability 8.9+ only)
INT8_MATMULS = frozenset({"nf4-int8"})  # the frozen base is multiplied in INT8 (compute capability 8.0+: A100s too)
# The frozen base lives in buffers of our own linears (ml/training/fp8.py, int8.py), multiplied in 8 bits.
EIGHT_BIT_MATMULS = FP8_MATMULS | INT8_MATMULS
