using System.Text.RegularExpressions;
using System.Xml.Linq;
using NUnit.Framework.Api;
using NUnit.Framework.Interfaces;
using NUnit.Framework.Internal;
using VwLmm.Cuda;

namespace VwLmm.GpuTests;

/// <summary>
/// <c>vwlmm-gpu-tests [PREFIX…]</c>: runs the VwLmm.Tests fixtures whose full names start with a PREFIX (default: the
/// Gpu* suites, the shared op conformance tests on the real CUDA driver) in this process, prints one line per fixture
/// and every failure, and exits 1 when a test failed, 2 when no test matched, else 0 (all-ignored, as without a GPU, is 0).
/// </summary>
public static class Program
{
    private const string DefaultPrefix = "VwLmm.Tests.Cuda.Gpu.";

    public static int Main(string[] args)
    {
        var prefixes = args.Length > 0 ? args : [DefaultPrefix];
        var probe = CudaDevice.Probe();
        Console.WriteLine(probe.Available
            ? $"GPU: {probe.Reason}: {string.Join("; ", probe.Devices)}"
            : $"no usable GPU: {probe.Reason}");

        var runner = new NUnitTestAssemblyRunner(new DefaultTestAssemblyBuilder());
        runner.Load(typeof(VwLmm.Tests.Ops.BackendOpTests).Assembly, new Dictionary<string, object>());
        var filter = TestFilter.FromXml(new XElement("filter", new XElement("or",
            prefixes.Select(p => new XElement("test", new XAttribute("re", "1"), "^" + Regex.Escape(p))))).ToString());
        var report = new Report();
        var result = runner.Run(report, filter);

        int total = result.PassCount + result.FailCount + result.SkipCount + result.InconclusiveCount;
        if (total == 0)
        {
            Console.Error.WriteLine($"vwlmm-gpu-tests: no test matches {string.Join(", ", prefixes)}");
            return 2;
        }
        Console.WriteLine($"{result.PassCount} passed, {result.FailCount} failed, {result.SkipCount + result.InconclusiveCount} skipped " +
                          $"({result.Duration:0.0} s)");
        return result.FailCount > 0 ? 1 : 0;
    }

    /// <summary>One line per fixture (with the reason when it was ignored as a whole) and one per failing test.</summary>
    private sealed class Report : ITestListener
    {
        public void TestStarted(ITest test) { }

        public void TestFinished(ITestResult result)
        {
            var status = result.ResultState.Status;
            if (!result.Test.IsSuite)
            {
                if (status == TestStatus.Failed)
                    Console.WriteLine($"  FAIL {result.FullName}: {result.Message.Trim().ReplaceLineEndings(" ")}");
                return;
            }
            if (result.Test.TestType != "TestFixture") return;
            string counts = $"{result.PassCount} passed, {result.FailCount} failed, {result.SkipCount + result.InconclusiveCount} skipped";
            string why = status is TestStatus.Skipped && result.Message.Length > 0 ? $": {result.Message.Trim()}" : "";
            Console.WriteLine($"{status.ToString().ToLowerInvariant(),-8} {result.Test.Name,-28} {counts}{why}");
        }

        public void TestOutput(TestOutput output) { }
        public void SendMessage(TestMessage message) { }
    }
}
