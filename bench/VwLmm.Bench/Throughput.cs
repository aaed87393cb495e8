using System.Reflection;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using VwLmm.Cpu;

namespace VwLmm.Bench;

/// <summary>Work done by one invocation of a benchmark method: floating-point operations or bytes moved.</summary>
public readonly record struct Work(double Amount, bool IsFlops)
{
    public static Work Flops(double n) => new(n, true);
    public static Work Bytes(double n) => new(n, false);
}

/// <summary>A benchmark class that can say how much work each of its methods does for the current parameters.</summary>
public interface IThroughput
{
    Work WorkOf(string method);
}

/// <summary>Adds the throughput and %-of-peak columns to a benchmark class's summary table.</summary>
public sealed class ThroughputConfig : ManualConfig
{
    /// <summary>fp32 FMA peak of this machine's cores (all of them, as CpuBackend() uses), measured once: 224 GFLOP/s
    /// on the 2-core Zen 4 of sessions 1–19, 450 on the Zen 5 of session 20 (full-width AVX-512).</summary>
    public static double PeakGflops { get; } = CpuPeak.MeasureGflops(Environment.ProcessorCount);

    public ThroughputConfig()
    {
        AddColumn(new ThroughputColumn(percentOfPeak: false), new ThroughputColumn(percentOfPeak: true));
    }
}

/// <summary>GFLOP/s (or GB/s) from the mean time and the case's <see cref="Work"/>; or that rate as % of fp32 peak.</summary>
public sealed class ThroughputColumn(bool percentOfPeak) : IColumn
{
    public string Id => percentOfPeak ? "PercentOfPeak" : "Throughput";
    public string ColumnName => percentOfPeak ? "% fp32 peak" : "Throughput";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => percentOfPeak ? 1 : 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => percentOfPeak
        ? $"GFLOP/s as a percentage of {ThroughputConfig.PeakGflops:F0} GFLOP/s, the measured FMA peak (compute-bound ops only)"
        : "GFLOP/s for compute-bound ops, GB/s of compulsory memory traffic for memory-bound ones";

    public bool IsAvailable(Summary summary) => true;
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        double? meanNs = summary[benchmarkCase]?.ResultStatistics?.Mean;
        if (meanNs is not > 0) return "NA";
        var work = WorkOf(benchmarkCase);
        double perSecond = work.Amount / meanNs.Value; // per ns = giga per second
        if (percentOfPeak) return work.IsFlops ? $"{100 * perSecond / ThroughputConfig.PeakGflops:F1}%" : "-";
        return work.IsFlops ? $"{perSecond:F1} GFLOP/s" : $"{perSecond:F1} GB/s";
    }

    /// <summary>A fresh instance of the benchmark class with this case's parameters, asked for its work.</summary>
    private static Work WorkOf(BenchmarkCase benchmarkCase)
    {
        var type = benchmarkCase.Descriptor.Type;
        var instance = (IThroughput)Activator.CreateInstance(type)!;
        foreach (var p in benchmarkCase.Parameters.Items)
        {
            const BindingFlags flags = BindingFlags.Public | BindingFlags.Instance;
            if (type.GetProperty(p.Name, flags) is { } prop) prop.SetValue(instance, p.Value);
            else type.GetField(p.Name, flags)?.SetValue(instance, p.Value);
        }
        return instance.WorkOf(benchmarkCase.Descriptor.WorkloadMethod.Name);
    }

    public override string ToString() => ColumnName;
}
