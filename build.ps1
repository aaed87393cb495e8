# VwLmm.Native build entry point for Windows/PowerShell: the same verbs as build.sh
# (deps | build | test | demo | bench | ptx | gpu-bundle | clean). build.sh is the tested path; this mirrors it.
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
    Copy-Item tests/VwLmm.GpuTests/bundle/run.sh, tests/VwLmm.GpuTests/bundle/README.txt $Out
    tar -czf $Tarball -C artifacts gpu-bundle
    if ($LASTEXITCODE -ne 0) { throw "build.ps1: tar failed" }
    $MiB = [math]::Floor((Get-Item $Tarball).Length / 1MB)
    Write-Host "[build] ${Tarball}: $MiB MiB"
    if ((Get-Item $Tarball).Length -gt 60MB) { throw "build.ps1: $Tarball is $MiB MiB, over the 60 MiB limit" }
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
    "clean" { Remove-Item -Recurse -Force artifacts -ErrorAction SilentlyContinue; dotnet clean VwLmm.Native.sln -nologo -v q }
    default { Write-Error "usage: ./build.ps1 deps|build|test|demo|bench|ptx|gpu-bundle|clean"; exit 2 }
}
