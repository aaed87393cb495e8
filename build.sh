#!/usr/bin/env bash
# VwLmm.Native build entry point. Verbs: deps | build | test | demo | bench | ptx | gpu-bundle | screenshot | clean
# Every verb runs what it needs first, so on a fresh machine `./build.sh demo` and `./build.sh test` are enough.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
CONFIG=${CONFIG:-Release}
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_CLI_WORKLOAD_UPDATE_NOTIFY_DISABLE=1

APT_PACKAGES=(libopenblas0-pthread libturbojpeg0 libnvrtc11.2 libnvrtc-builtins11.8 g++ cmake)

log() { printf '\033[1m[build]\033[0m %s\n' "$*" >&2; }

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Installs those of the given Debian packages that are missing.
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    # CUDA's NVRTC lives in Debian non-free; enable it once (idempotent).
    local src=/etc/apt/sources.list.d/debian.sources
    if [ -f "$src" ] && grep -q '^Components: main$' "$src"; then
      sudo_if_needed sed -i 's/^Components: main$/Components: main contrib non-free non-free-firmware/' "$src"
    fi
    # update and install strictly one after the other: the image's docker-clean hook deletes .debs after each dpkg call.
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

deps() {
  apt_install "${APT_PACKAGES[@]}"
  command -v dotnet >/dev/null || { echo "build.sh: dotnet (SDK 10) not found on PATH" >&2; exit 1; }
}

# Native parts: the kernel emulator (kernels/*.cu compiled by g++ against kernels/emu/cuda_emu.h).
native() {
  if [ -f cmake/CMakeLists.txt ]; then
    cmake -S cmake -B artifacts/native -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build artifacts/native -j"$(nproc)" >/dev/null
  fi
}

build() {
  deps
  native
  log "dotnet build ($CONFIG)"
  dotnet build VwLmm.Native.sln -c "$CONFIG" -nologo -clp:ErrorsOnly
}

cli() { dotnet "src/VwLmm.Cli/bin/$CONFIG/net10.0/vwlmm.dll" "$@"; }

# artifacts/gpu-bundle(.tar.gz): self-contained linux-x64 vwlmm and GPU test runner (tests/VwLmm.GpuTests) for a GPU
# machine without dotnet; its run.sh runs the CUDA conformance suites on the driver, then `vwlmm bench --device cuda`,
# and its gpu-session.sh every GPU check of a session (sanitizers, both lab presets, the model beside PyTorch, the demo).
gpu_bundle() {
  deps
  native
  local out=artifacts/gpu-bundle tarball=artifacts/gpu-bundle.tar.gz limit=$((60 << 20))
  rm -rf "$out" "$tarball"
  local publish=(-c "$CONFIG" -r linux-x64 --self-contained -p:DebugType=none -p:SatelliteResourceLanguages=en -nologo -clp:ErrorsOnly -o "$out")
  log "dotnet publish (self-contained linux-x64) → $out"
  # The runner's output carries vwlmm as a framework-dependent reference; vwlmm's own publish, second, replaces it.
  dotnet publish tests/VwLmm.GpuTests "${publish[@]}"
  dotnet publish src/VwLmm.Cli "${publish[@]}"
  cp tests/VwLmm.GpuTests/bundle/* bench/run_side_by_side.py "$out/"
  mkdir -p "$out/reference" && cp bench/reference/torch_peer.py "$out/reference/"
  tar -czf "$tarball" -C artifacts gpu-bundle
  local size; size=$(stat -c %s "$tarball")
  log "$tarball: $((size >> 20)) MiB"
  if [ "$size" -gt "$limit" ]; then echo "build.sh: $tarball is $((size >> 20)) MiB, over the 60 MiB limit" >&2; exit 1; fi
}

# docs/img/report.png for the README: a demo report rendered by headless Chromium (Debian's chromium, DejaVu fonts so
# the picture is the same on every machine). 1100×940 holds the whole demo report in its wide layout: the accuracy table
# beside the loss chart, the six visual-word maps in one row below; optipng keeps the committed PNG small.
screenshot() {
  local report=${1:-runs/demo/report.html} out=${2:-docs/img/report.png}
  [ -f "$report" ] || { echo "build.sh: report $report not found (run ./build.sh demo first)" >&2; exit 1; }
  apt_install chromium fonts-dejavu-core optipng
  mkdir -p "$(dirname "$out")"
  local tmp; tmp=$(mktemp --suffix=.png "$(dirname "$out")/.report.XXXXXX")
  local err
  # Chromium chatters on stderr (D-Bus, GPU) even when it works: show it only when no picture came out.
  if ! err=$(chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1100,1000 \
      --screenshot="$tmp" "file://$(realpath "$report")" 2>&1) || [ ! -s "$tmp" ]; then
    rm -f "$tmp"
    echo "$err" >&2
    echo "build.sh: chromium did not render $report" >&2
    exit 1
  fi
  optipng -quiet -o2 "$tmp"
  mv "$tmp" "$out"
  log "$out: $(($(stat -c %s "$out") >> 10)) KiB"
}

case "${1:-}" in
  deps) deps ;;
  build) build ;;
  test)
    build
    log "dotnet test"
    shift
    dotnet test tests/VwLmm.Tests/VwLmm.Tests.csproj -c "$CONFIG" --no-build -nologo "$@"
    ;;
  demo) build; shift; cli demo "$@" ;;
  bench)
    # Side by side with the PyTorch peer (Debian's torch, run by /usr/bin/python3); options go to bench/run_side_by_side.py.
    build
    apt_install python3-torch
    shift
    /usr/bin/python3 bench/run_side_by_side.py --cli "src/VwLmm.Cli/bin/$CONFIG/net10.0/vwlmm.dll" "$@"
    ;;
  ptx) build; shift; cli ptx "$@" ;;
  gpu-bundle) gpu_bundle ;;
  screenshot) shift; screenshot "$@" ;;
  clean) rm -rf artifacts; dotnet clean VwLmm.Native.sln -nologo -v q ;;
  *) echo "usage: ./build.sh deps|build|test|demo|bench|ptx|gpu-bundle|screenshot|clean" >&2; exit 2 ;;
esac
