# VwLmm.Native build entry point for Windows/PowerShell: the same verbs as build.sh
# (deps | build | test | demo | bench | ptx | gpu-bundle | screenshot | clean). build.sh is the tested path; this mirrors it.
param([Parameter(Position = 0)][string]$Verb = "", [Parameter(ValueFromRemainingArguments = $true)][string[]]$Rest)
$ErrorActionPreference = "Stop"
Set-Location $PSScriptRoot
$Config = if ($env:CONFIG) { $env:CONFIG } else { "Release" }
$env:DOTNET_CLI_TELEMETRY_OPTOUT = "1"; $env:DOTNET_NOLOGO = "1"

function Deps {
    if (-not (Get-Command dotnet -ErrorAction SilentlyContinue)) { throw "build.ps1: dotnet (SDK 10) not found on PATH" }
    if ($IsLinux) {
        # Same packages as build.sh; apt needs root.
        & bash ./build.sh deps
        if ($LASTEXITCODE -ne 0) { throw "build.ps1: deps failed" }
    } else {
        Write-Host "[build] on Windows install OpenBLAS (libopenblas.dll on PATH) and, for CUDA, the CUDA toolkit (nvrtc, cublas)."
    }
}

function Native {
    if ((Test-Path cmake/CMakeLists.txt) -and (Get-Command cmake -ErrorAction SilentlyContinue)) {
        cmake -S cmake -B artifacts/native -DCMAKE_BUILD_TYPE=Release | Out-Null
        cmake --build artifacts/native --config Release | Out-Null
        if ($LASTEXITCODE -ne 0) { throw "build.ps1: native build failed" }
    }
}

function Build {
    Deps; Native
    Write-Host "[build] dotnet build ($Config)"
    dotnet build VwLmm.Native.sln -c $Config -nologo -clp:ErrorsOnly
    if ($LASTEXITCODE -ne 0) { throw "build.ps1: build failed" }
}

# artifacts/gpu-bundle(.tar.gz): self-contained linux-x64 vwlmm and GPU test runner for a GPU machine without dotnet.
function GpuBundle {
    Deps; Native
    $Out = "artifacts/gpu-bundle"; $Tarball = "artifacts/gpu-bundle.tar.gz"
    Remove-Item -Recurse -Force $Out, $Tarball -ErrorAction SilentlyContinue
    $Publish = @("-c", $Config, "-r", "linux-x64", "--self-contained", "-p:DebugType=none", "-p:SatelliteResourceLanguages=en", "-nologo", "-clp:ErrorsOnly", "-o", $Out)
    Write-Host "[build] dotnet publish (self-contained linux-x64) -> $Out"
    # The runner's output carries vwlmm as a framework-dependent reference; vwlmm's own publish, second, replaces it.
    foreach ($Project in "tests/VwLmm.GpuTests", "src/VwLmm.Cli") {
        dotnet publish $Project @Publish
        if ($LASTEXITCODE -ne 0) { throw "build.ps1: publishing $Project failed" }
    }
    Copy-Item tests/VwLmm.GpuTests/bundle/*, bench/run_side_by_side.py $Out
    New-Item -ItemType Directory -Force "$Out/reference" | Out-Null
    Copy-Item bench/reference/torch_peer.py "$Out/reference"
    tar -czf $Tarball -C artifacts gpu-bundle
    if ($LASTEXITCODE -ne 0) { throw "build.ps1: tar failed" }
    $MiB = [math]::Floor((Get-Item $Tarball).Length / 1MB)
    Write-Host "[build] ${Tarball}: $MiB MiB"
    if ((Get-Item $Tarball).Length -gt 60MB) { throw "build.ps1: $Tarball is $MiB MiB, over the 60 MiB limit" }
}

# docs/img/report.png for the README: a demo report rendered by headless Chromium, as build.sh does (on Linux it installs
# Debian's chromium; elsewhere have chromium, chrome or msedge on PATH; optipng, when present, shrinks the PNG).
function Screenshot([string]$Report = "runs/demo/report.html", [string]$Out = "docs/img/report.png") {
    if (-not (Test-Path $Report -PathType Leaf)) { throw "build.ps1: report $Report not found (run ./build.ps1 demo first)" }
    if ($IsLinux) {
        & bash -c 'dpkg-query -W -f=''${Status}'' chromium 2>/dev/null | grep -q "install ok installed" || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core optipng >/dev/null; }'
        if ($LASTEXITCODE -ne 0) { throw "build.ps1: installing chromium failed (apt needs root)" }
    }
    $Browser = "chromium", "chrome", "msedge" | Where-Object { Get-Command $_ -ErrorAction SilentlyContinue } | Select-Object -First 1
    if (-not $Browser) { throw "build.ps1: no chromium, chrome or msedge on PATH" }
    $Dir = Split-Path -Parent ([IO.Path]::GetFullPath($Out))
    New-Item -ItemType Directory -Force $Dir | Out-Null
    $Tmp = Join-Path $Dir ".report.$PID.png"
    $Url = ([Uri](Resolve-Path $Report).Path).AbsoluteUri
    & $Browser --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1100,1000 "--screenshot=$Tmp" $Url 2>$null
    if (-not (Test-Path $Tmp) -or (Get-Item $Tmp).Length -eq 0) {
        Remove-Item -Force $Tmp -ErrorAction SilentlyContinue
        throw "build.ps1: $Browser did not render $Report"
    }
    if (Get-Command optipng -ErrorAction SilentlyContinue) { optipng -quiet -o2 $Tmp }
    Move-Item -Force $Tmp $Out
    Write-Host "[build] ${Out}: $([math]::Floor((Get-Item $Out).Length / 1KB)) KiB"
}

function Cli { dotnet "src/VwLmm.Cli/bin/$Config/net10.0/vwlmm.dll" @args; exit $LASTEXITCODE }

switch ($Verb) {
    "deps" { Deps }
    "build" { Build }
    "test" { Build; dotnet test tests/VwLmm.Tests/VwLmm.Tests.csproj -c $Config --no-build -nologo @Rest; exit $LASTEXITCODE }
    "demo" { Build; Cli demo @Rest }
    "bench" {
        # Side by side with the PyTorch peer; on Linux installs Debian's python3-torch as build.sh does, elsewhere have torch on python3.
        Build
        if ($IsLinux) {
            & bash -c 'dpkg-query -W -f=''${Status}'' python3-torch 2>/dev/null | grep -q "install ok installed" || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends python3-torch >/dev/null; }'
            if ($LASTEXITCODE -ne 0) { throw "build.ps1: installing python3-torch failed (apt needs root)" }
        }
        $Python = if (Test-Path /usr/bin/python3) { "/usr/bin/python3" } else { "python3" }
        & $Python bench/run_side_by_side.py --cli "src/VwLmm.Cli/bin/$Config/net10.0/vwlmm.dll" @Rest
        exit $LASTEXITCODE
    }
    "ptx" { Build; Cli ptx @Rest }
    "gpu-bundle" { GpuBundle }
    "screenshot" { Screenshot @Rest }
    "clean" { Remove-Item -Recurse -Force artifacts -ErrorAction SilentlyContinue; dotnet clean VwLmm.Native.sln -nologo -v q }
    default { Write-Error "usage: ./build.ps1 deps|build|test|demo|bench|ptx|gpu-bundle|screenshot|clean"; exit 2 }
}
