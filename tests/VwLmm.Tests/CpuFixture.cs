using NUnit.Framework;
using VwLmm.Cpu;

namespace VwLmm.Tests;

/// <summary>One two-thread CPU backend shared by the tests of a fixture.</summary>
public abstract class CpuFixture
{
    protected CpuBackend Cpu { get; private set; } = null!;

    [OneTimeSetUp]
    public void CreateCpuBackend() => Cpu = new CpuBackend(2);

    [OneTimeTearDown]
    public void DisposeCpuBackend() => Cpu.Dispose();
}
