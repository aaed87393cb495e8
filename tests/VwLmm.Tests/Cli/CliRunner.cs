using System.Diagnostics;
using NUnit.Framework;

namespace VwLmm.Tests.Cli;

/// <summary>Runs the real `vwlmm` binary (the built vwlmm.dll beside the tests) and captures exit code and output.</summary>
internal static class CliRunner
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static string Fixtures => Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures");

    private const int TimeLimitSeconds = 300;

    public static Result Run(params string[] args) => RunWithInput("", args);

    /// <summary>Runs the binary with <paramref name="input"/> on its standard input, then end of file.</summary>
    public static Result RunWithInput(string input, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = TestContext.CurrentContext.TestDirectory,
        };
        psi.ArgumentList.Add(Path.Combine(TestContext.CurrentContext.TestDirectory, "vwlmm.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.StandardInput.Write(input);
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        // A guard against hangs, not a speed check: the slowest call (demo --quick, ≈ 45 s on an idle two-core machine)
        // takes several times longer on a machine other jobs load.
        if (!p.WaitForExit(TimeLimitSeconds * 1000))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"vwlmm {string.Join(" ", args)} did not finish in {TimeLimitSeconds} s");
        }
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Asserts a failure with exactly one line on stderr, no stack trace, containing every fragment.</summary>
    public static void AssertOneLineError(Result r, int exitCode, params string[] fragments)
    {
        Assert.That(r.ExitCode, Is.EqualTo(exitCode), $"exit code; stderr: {r.Stderr}");
        var lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(1), $"expected one error line, got: {r.Stderr}");
        Assert.That(r.Stderr, Does.Not.Contain("   at "), "stack trace leaked");
        foreach (var f in fragments) Assert.That(lines[0], Does.Contain(f));
    }

    /// <summary>A scratch directory, deleted when the test run ends.</summary>
    public static string TempDir() => TempDirectories.Create("vwlmm-cli-");
}
