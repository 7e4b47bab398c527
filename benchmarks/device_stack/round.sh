#!/usr/bin/env bash
# Device side: the open issues' GPU work in a few long runs, after the stack is carried (README.md here). Each step
# has its own time limit and writes its own file under $OUT as it goes, so a step that hangs costs only its limit and
# what ran before it still comes back. Steps run in the order given; STEP:SECONDS overrides a step's limit.
#
#   bash benchmarks/device_stack/round.sh parity            # Gated DeltaNet parity test (fla vs the fp32 reference)
#   bash benchmarks/device_stack/round.sh qwen35 doctor     # Qwen3.5 training rate with fla; bioreview doctor --all
#   bash benchmarks/device_stack/round.sh graph-a graph-b   # the asset graph through Dagster (benchmarks/graph_gpu.py)
#   groups: kernels = qwen35 int8 doctor int8mm; graph = graph-a graph-b
set -uo pipefail
cd "$(dirname "$0")/../.."
bash benchmarks/device_stack/install.sh || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr 'A-Z' 'a-z' | grep -oE 'h100|h200|a100' | head -1)
gpu=${gpu:-gpu}
# The copy of the tree there has no history of its own: the caller names the commit (PROJECT_COMMIT=$(git rev-parse
# --short HEAD) in the run's command).
head="# $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1); project at \
${PROJECT_COMMIT:-unknown commit}; $(date -u +%F); stack of benchmarks/device_stack/"

step() {  # step LIMIT_S FILE COMMAND...: run with a limit, output (and its exit status) into $OUT/FILE
    local limit=$1 file=$2; shift 2
    { echo "$head"; echo "# command: $*"; } >"$OUT/$file"
    local t0=$SECONDS
    timeout --signal=TERM --kill-after=15 "$limit" "$@" >>"$OUT/$file" 2>&1
    local rc=$?
    echo "# exit $rc after $((SECONDS - t0)) s" >>"$OUT/$file"
    echo "step $file: exit $rc after $((SECONDS - t0)) s"
}

run_step() {  # NAME [LIMIT]
    local name=$1 limit=${2:-}
    case "$name" in
    parity)  # fla compiles and autotunes its kernels on a cold cache: the first GPU case ran past 150 s on the H100
        step "${limit:-560}" "gdn_parity_${gpu}.txt" python -m pytest -q -p no:cacheprovider -rs \
            bioreview_assets_tests/ml/test_gated_delta_rule_parity.py ;;
    qwen35)
        step "${limit:-200}" "train_qwen35_fla_${gpu}.txt" python benchmarks/train_throughput.py --shape qwen3.5-9b \
            --steps 3 --profile '' --variants ours-nf4lin,ours-nf4fp8lin+sac+offload+hostemb ;;
    int8)
        step "${limit:-150}" "train_int8_${gpu}.txt" python benchmarks/train_throughput.py --shape qwen3-8b --steps 3 \
            --profile '' --variants ours+sac+offload+hostemb,ours-nf4int8+sac+offload+hostemb ;;
    doctor)
        step "${limit:-60}" "doctor_${gpu}.txt" python -m bioreview_assets.cli doctor --all ;;
    int8mm)
        step "${limit:-60}" "int8_matmul_${gpu}.txt" python benchmarks/int8_matmul.py ;;
    graph-a)  # the Qwen3-8B shape: random checkpoint, interrupted training, resume, merge, generation, scores
        step "${limit:-560}" "graph_gpu_a_${gpu}.txt" python benchmarks/graph_gpu.py --chain a --work /tmp/graph_gpu ;;
    graph-b)  # the demo's SmolLM2 with a GPU recipe, beside its base, BM25, the checklist and the reviewers
        step "${limit:-560}" "graph_gpu_b_${gpu}.txt" python benchmarks/graph_gpu.py --chain b --work /tmp/graph_gpu ;;
    kernels) for s in qwen35 int8 doctor int8mm; do run_step "$s"; done ;;
    graph) for s in graph-a graph-b; do run_step "$s"; done ;;
    *) echo "round.sh: unknown step '$name' (parity qwen35 int8 doctor int8mm graph-a graph-b kernels graph)"
       exit 2 ;;
    esac
}

[ $# -gt 0 ] || { echo "usage: round.sh STEP[:SECONDS] ..."; exit 2; }
for arg in "$@"; do
    run_step "${arg%%:*}" "$([ "$arg" != "${arg#*:}" ] && echo "${arg#*:}")"
done
ls -la "$OUT"
