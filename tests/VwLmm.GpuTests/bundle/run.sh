#!/bin/sh
# The CUDA op conformance suites on this machine's GPU, then the kernel lab (vwlmm bench --device cuda).
# Arguments go to the bench (e.g. ./run.sh --preset llava-7b --batch 1 --repeats 20). Needs the NVIDIA driver and cuBLAS;
# no dotnet. Exit status 0 when every test passed and the bench ran.
set -u
cd "$(dirname "$0")"
chmod +x vwlmm vwlmm-gpu-tests 2>/dev/null || true # a bundle packed on Windows carries no exec bits
. ./find-cublas.sh
echo "== conformance: the shared op suites on the CUDA backend (real driver)"
./vwlmm-gpu-tests
tests=$?
echo "== kernel lab: vwlmm bench --device cuda $*"
./vwlmm bench --device cuda "$@"
bench=$?
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
