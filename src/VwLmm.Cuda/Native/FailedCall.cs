using System.Runtime.CompilerServices;

namespace VwLmm.Cuda.Native;

/// <summary>
/// The name of a checked call (<c>$"cuLaunchKernel({kernel})"</c>), formatted only when its status is not 0. The hot
/// path checks every launch and cuBLAS call; formatting the name on each success was 42 KB of managed allocation per
/// bench-5m train step on an H100.
/// </summary>
[InterpolatedStringHandler]
internal ref struct FailedCall
{
    private DefaultInterpolatedStringHandler _name;

    public FailedCall(int literalLength, int formattedCount, int status, out bool failed)
    {
        failed = status != 0;
        _name = failed ? new DefaultInterpolatedStringHandler(literalLength, formattedCount) : default;
    }

    public void AppendLiteral(string value) => _name.AppendLiteral(value);

    public void AppendFormatted<T>(T value) => _name.AppendFormatted(value);

    public string Name() => _name.ToStringAndClear();
}
