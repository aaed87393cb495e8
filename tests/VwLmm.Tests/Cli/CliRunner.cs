using System.Diagnostics;
using System.Runtime.InteropServices;
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

    public const int SigInt = 2, SigTerm = 15;

    /// <summary>
    /// Runs the binary with <paramref name="args"/>, sends <paramref name="signal"/> once <paramref name="watched"/>
    /// has <paramref name="afterLines"/> lines, and waits for the exit → (exit code, stdout + stderr). A process that a
    /// shell without job control started ignores SIGINT, and so would its children: the binary then starts through
    /// coreutils' env --default-signal, which restores it (and execs, so the binary keeps env's pid).
    /// </summary>
    public static (int Exit, string Output) RunUntilInterrupted(string[] args, string watched, int signal, int afterLines)
    {
        bool restore = IgnoredHere(SigInt);
        var psi = new ProcessStartInfo(restore ? "env" : "dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (restore)
        {
            psi.ArgumentList.Add("--default-signal=INT");
            psi.ArgumentList.Add("dotnet");
        }
        psi.ArgumentList.Add(Path.Combine(TestContext.CurrentContext.TestDirectory, "vwlmm.dll"));
        foreach (string a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        var clock = Stopwatch.StartNew();
        while (!p.HasExited && LineCount(watched) < afterLines && clock.Elapsed < TimeSpan.FromMinutes(3)) Thread.Sleep(20);
        if (!p.HasExited) Assert.That(kill(p.Id, signal), Is.Zero, $"kill({signal})");
        Assert.That(p.WaitForExit(180_000), $"vwlmm {args[0]} did not exit after signal {signal}");
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);

    /// <summary>Whether env can start a child with SIGINT's default action.</summary>
    public static bool CanRestoreSigInt()
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo("env", ["--default-signal=INT", "true"]) { RedirectStandardError = true, UseShellExecute = false })!;
            p.WaitForExit();
            return p.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }

    /// <summary>Whether this process ignores the signal (the SigIgn mask of /proc/self/status, bit signal − 1).</summary>
    public static bool IgnoredHere(int signal)
    {
        string line = File.ReadLines("/proc/self/status").First(l => l.StartsWith("SigIgn:"));
        return (Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) >> (signal - 1) & 1) != 0;
    }

    private static int LineCount(string path)
    {
        try
        {
            using var s = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            using var r = new StreamReader(s);
            return r.ReadToEnd().Count(c => c == '\n');
        }
        catch (IOException)
        {
            return 0;
        }
    }
}
