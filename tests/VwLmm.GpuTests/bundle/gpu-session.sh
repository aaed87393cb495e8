#!/bin/sh
# Every GPU check of a session in one command (about three minutes on an H100), each step's output in OUT/STEP.log:
#   tests      the conformance suites on the driver (vwlmm-gpu-tests)
#   sanitizer  compute-sanitizer memcheck and initcheck over them (reads of device memory nothing wrote, which the
#              emulator's NaN-filled arenas catch only inside the arena), racecheck over the kernels that share
#              memory (when installed)
#   lab        the kernel lab at bench-5m and LLaVA-7B shapes
#   model      the model side by side with PyTorch at bench-5m and a wider shape (run_side_by_side.py; when python3
#              has torch), ours with fp32 and bf16 weights
#   ops        the per-op profile of the model on the GPU
#   graphs     decode with the recorded decode step (a CUDA graph) against every step's launches, alternating
#   demo       the ShapesGrid demo trained and evaluated on the GPU (OUT/demo holds its report)
# usage: ./gpu-session.sh [OUT]   (default ./gpu-session). A failed step does not stop the rest; the last lines say
# which failed, and the exit status is 0 when none did.
set -u
cd "$(dirname "$0")"
chmod +x vwlmm vwlmm-gpu-tests 2>/dev/null || true
out=${1:-gpu-session}
mkdir -p "$out"
. ./find-cublas.sh
failed=""
step() { # NAME SECONDS COMMAND...: one step under a time limit, its output appended to OUT/NAME.log
  name=$1 limit=$2
  shift 2
  echo "== $name: $*" | tee -a "$out/$name.log"
  start=$(date +%s)
  timeout "$limit" "$@" >>"$out/$name.log" 2>&1
  rc=$?
  echo "   rc $rc after $(($(date +%s) - start)) s" | tee -a "$out/$name.log"
  [ "$rc" -eq 0 ] || case " $failed " in *" $name "*) ;; *) failed="$failed $name" ;; esac
}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >"$out/gpu.txt" 2>&1
step tests 300 ./vwlmm-gpu-tests
if command -v compute-sanitizer >/dev/null; then
  step sanitizer 600 compute-sanitizer --tool memcheck --error-exitcode 1 ./vwlmm-gpu-tests
  step sanitizer 600 compute-sanitizer --tool initcheck --error-exitcode 1 ./vwlmm-gpu-tests
  step sanitizer 600 compute-sanitizer --tool racecheck --error-exitcode 1 ./vwlmm-gpu-tests \
    VwLmm.Tests.Cuda.Gpu.DriverAttentionOpTests VwLmm.Tests.Cuda.Gpu.DriverNormOpTests VwLmm.Tests.Cuda.Gpu.DriverVocabOpTests \
    VwLmm.Tests.Cuda.Gpu.DriverGemmOpTests VwLmm.Tests.Cuda.Gpu.DriverBf16GemmOpTests VwLmm.Tests.Cuda.Gpu.DriverOptimizerOpTests
fi
step lab 120 ./vwlmm bench --device cuda --repeats 20
step lab 120 ./vwlmm bench --device cuda --preset llava-7b --batch 1 --repeats 20
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  step model 300 python3 run_side_by_side.py --cli ./vwlmm --device cuda --python python3 --rounds 3 --repeats 10 --out "$out/model.jsonl"
  step model 300 python3 run_side_by_side.py --cli ./vwlmm --device cuda --python python3 --rounds 2 --repeats 10 \
    --image-tokens 256 --width 512 --out "$out/model.jsonl"
else
  echo "== model: skipped (python3 has no torch with CUDA)" | tee -a "$out/model.log"
fi
step ops 120 ./vwlmm bench --device cuda --model-bench --ops --repeats 5
for round in 1 2 3; do
  step graphs 60 ./vwlmm bench --device cuda --model-bench --repeats 10 --json
  step graphs 60 ./vwlmm bench --device cuda --model-bench --repeats 10 --json --no-graphs
done
step demo 300 ./vwlmm demo --device cuda --seed 1 --out "$out/demo" --cache "$out/cache" --quiet
if [ -n "$failed" ]; then echo "failed:$failed"; exit 1; fi
echo "every step passed; logs in $out"
