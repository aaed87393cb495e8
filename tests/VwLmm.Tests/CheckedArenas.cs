using NUnit.Framework;
using VwLmm.Core;

namespace VwLmm.Tests;

/// <summary>
/// Every test runs with checked arenas (no recycled handles), so that code keeping a tensor across an arena reset
/// fails here instead of silently reading a later tensor. The variable reaches the `vwlmm` processes the CLI tests
/// start. Tests of the recycling itself build their arenas with <c>recycleHandles: true</c>.
/// </summary>
[SetUpFixture]
public sealed class CheckedArenas
{
    [OneTimeSetUp]
    public void TurnOnArenaChecks()
    {
        Environment.SetEnvironmentVariable("VWLMM_ARENA_CHECKS", "1");
        Arena.RecycleHandlesByDefault = false;
    }
}
