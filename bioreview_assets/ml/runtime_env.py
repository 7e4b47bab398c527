"""Library versions and hardware recorded with every checkpoint and adapter (resume guard, W17), and the hardware
probes that training and generation both read (standard library only)."""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

# A checkpoint is only resumed under the same versions of these (the reference refused on a mismatch too:
# docs/reference.md, reference pipeline §2.6).
GUARDED_PACKAGES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate")
# Recorded for the record, not compared: they do not change what a checkpoint means.
RECORDED_PACKAGES = ("datasets", "liger-kernel", "flash-attn", "triton")


class VersionMismatchError(RuntimeError):
    """A checkpoint was written under other library versions than the ones installed now."""


def package_version(name: str) -> str | None:
    """Installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str | None]:
    """Python plus the guarded and recorded package versions."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in GUARDED_PACKAGES + RECORDED_PACKAGES:
        versions[name] = package_version(name)
    return versions


def version_differences(recorded: dict[str, str | None], current: dict[str, str | None]) -> dict[str, list]:
    """Guarded entries (python included) whose recorded and current versions differ: name -> [recorded, current]."""
    keys = ("python",) + GUARDED_PACKAGES
    return {key: [recorded.get(key), current.get(key)] for key in keys if recorded.get(key) != current.get(key)}


def check_versions(recorded: dict[str, str | None], *, allow_mismatch: bool, where: str) -> dict[str, list]:
    """Raise VersionMismatchError when the guarded versions differ, unless allowed; return the differences."""
    diffs = version_differences(recorded, library_versions())
    if diffs and not allow_mismatch:
        lines = ", ".join(f"{name} {old} -> {new}" for name, (old, new) in sorted(diffs.items()))
        raise VersionMismatchError(
            f"refusing to resume from {where}: it was written under other library versions ({lines}). "
            "Reinstall the recorded versions, delete the checkpoints to start over, or pass "
            "allow_version_mismatch=True to resume anyway."
        )
    return diffs


def gpu_name() -> str | None:
    """Name of the first CUDA device, or None on a machine without one."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def cpu_has_native_bf16() -> bool:
    """The CPU executes bf16 matmuls natively (avx512_bf16 or AMX), as read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
