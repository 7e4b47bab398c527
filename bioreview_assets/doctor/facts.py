"""What this machine has: GPU, kernel packages and their versions, the vLLM venv, storage. Probed, never assumed.

The one module of `doctor` that imports torch (lazily); every probe catches its own failure and records why, so the
diagnosis sees a missing library as a fact, not as a crash of the doctor itself.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class GpuFacts:
    name: str
    capability: tuple[int, int]
    free_gib: float
    total_gib: float


@dataclass(frozen=True)
class MachineFacts:
    """Everything diagnose() reads about the machine; tests build it by hand."""

    torch: str | None
    cuda_build: str | None  # torch.version.cuda, None for a CPU build
    gpu: GpuFacts | None
    triton: str | None
    triton_expected_by_torch: str | None  # torch's own pin (Requires-Dist triton==X), None for CPU builds
    packages: dict[str, str | None] = field(default_factory=dict)  # liger-kernel, fla-core, bitsandbytes, ...
    bitsandbytes_cuda: str | None = None  # None: its CUDA library loaded (or no GPU); else why not
    vllm: str | None = None  # None: a vLLM interpreter answered; else why not
    storage_error: str | None = None  # None: the storage root is writable


KERNEL_PACKAGES = ("bitsandbytes", "liger-kernel", "fla-core", "flash-linear-attention", "causal-conv1d")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def triton_pin_of_torch() -> str | None:
    """The Triton version torch's wheel requires (torch pins it exactly), from its package metadata."""
    try:
        requires = importlib.metadata.requires("torch") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for line in requires:
        match = re.match(r"triton\s*==\s*([0-9][^;\s]*)", line)
        if match:
            return match.group(1)
    return None


def _gpu() -> GpuFacts | None:
    import torch

    if not torch.cuda.is_available():
        return None
    # A step that ran before in this process (Dagster's in-process executor: the demo, graph_gpu.py) leaves blocks in
    # torch's cache, or tensors held by a failed step's traceback, that mem_get_info counts as taken: on the H100 a
    # generation step found 56.8 of 79.2 GiB free after a failed training step. Free them before measuring.
    import gc

    gc.collect()
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info(0)
    return GpuFacts(torch.cuda.get_device_name(0), tuple(torch.cuda.get_device_capability(0)), free / 1024**3,
                    total / 1024**3)


def _bitsandbytes_cuda(gpu: GpuFacts | None) -> str | None:
    if gpu is None:
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes is not installed"
    try:
        from bitsandbytes import cextension

        lib = getattr(cextension, "lib", None)
        if lib is None or "Mock" in type(lib).__name__ or "Error" in type(lib).__name__:
            return f"bitsandbytes loaded no CUDA library ({type(lib).__name__})"
    except Exception as err:  # noqa: BLE001 - any failure here is the finding
        return f"importing bitsandbytes failed: {type(err).__name__}: {err}"
    return None


def _vllm(python: Path | None) -> str | None:
    if importlib.util.find_spec("vllm") is not None:
        return None
    if python is None or not python.exists():
        return ("no vLLM interpreter: BIOREVIEW_VLLM_PYTHON is unset and .venv-vllm is missing"
                if python is None else f"BIOREVIEW_VLLM_PYTHON={python} does not exist")
    from bioreview_assets.ml.generation.vllm_backend import foreign_interpreter_env

    # the same environment the vLLM worker gets, so the probe sees what a generation would
    done = subprocess.run([str(python), "-c", "import vllm; print(vllm.__version__)"], capture_output=True, text=True,
                          timeout=120, env=foreign_interpreter_env())
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return f"{python} cannot import vllm: {tail}"
    return None


def _storage(root: str) -> str | None:
    if "://" in root:
        return None  # object stores are checked by their first write (credentials live in the pod's environment)
    path = Path(root)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=f".doctor-{uuid.uuid4().hex[:6]}-"):
            pass
    except OSError as err:
        return f"cannot write under {root}: {err.strerror or err}"
    return None


def probe(*, storage_root: str, vllm_python: Path | None, want_vllm: bool) -> MachineFacts:
    """Probe this machine (imports torch; starts the vLLM interpreter only when a config asks for vLLM)."""
    torch_version = _version("torch")
    cuda_build = None
    gpu = None
    if torch_version is not None:
        import torch

        cuda_build = torch.version.cuda
        gpu = _gpu()
    return MachineFacts(
        torch=torch_version, cuda_build=cuda_build, gpu=gpu, triton=_version("triton"),
        triton_expected_by_torch=triton_pin_of_torch(),
        packages={name: _version(name) for name in KERNEL_PACKAGES},
        bitsandbytes_cuda=_bitsandbytes_cuda(gpu),
        vllm=_vllm(vllm_python) if want_vllm else None,
        storage_error=_storage(storage_root),
    )
