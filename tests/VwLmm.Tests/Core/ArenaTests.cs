using NUnit.Framework;
using VwLmm.Core;

namespace VwLmm.Tests.Core;

using Ops = VwLmm.Core.Ops;

/// <summary>
/// A checked arena never hands a handle out twice: a tensor kept across a reset stays freed after the arena has
/// reused its memory, and every use of it throws; and its uninitialised F32 memory reads NaN. (The recycling arena's
/// side is in Perf/AllocationTests.)
/// </summary>
public class ArenaTests : CpuFixture
{
    [Test]
    public void TestSuiteRunsCheckedArenas()
    {
        using var arena = new Arena(Cpu, 1 << 16);
        Assert.That(arena.RecycleHandles, Is.False, "arenas built without a choice while the suite's CheckedArenas is set up");
    }

    [Test]
    public void StaleHandleStaysFreedAfterItsMemoryIsReused()
    {
        using var arena = new Arena(Cpu, 1 << 16, recycleHandles: false);
        var stale = arena.Allocate(2, 3);
        var staleView = stale.View(2, new Shape(4));
        arena.Reset();
        var fresh = arena.Allocate(2, 3);
        var freshView = fresh.Reshape(6);
        Assert.That(fresh.ByteOffset, Is.EqualTo(stale.ByteOffset), "the new tensor takes the stale one's memory");
        Assert.That(fresh, Is.Not.SameAs(stale));
        Assert.That(freshView, Is.Not.SameAs(staleView));
        Assert.That(stale.IsAlive || staleView.IsAlive || stale.View(0, new Shape(6)).IsAlive, Is.False);
        Assert.That(fresh.IsAlive && freshView.IsAlive, Is.True);
    }

    [Test]
    public void EveryUseOfAStaleHandleThrows()
    {
        using var w = new Parameter(Cpu, "w", new Shape(3, 4));
        using var arena = new Arena(Cpu, 1 << 16, recycleHandles: false);
        var tape = new Tape(Cpu, arena, record: false);
        var x = Ops.Input(tape, new float[8], 2, 4);
        var ids = arena.Allocate(new Shape(3), DType.I32);
        tape.Reset();
        Ops.Input(tape, new float[8], 2, 4);
        arena.Allocate(new Shape(3), DType.I32);

        var e = Assert.Throws<InvalidOperationException>(() => Ops.Linear(tape, x, w.Value))!;
        Assert.That(e.Message, Does.Contain("Linear").And.Contain("[2,4]").And.Contain("freed"));
        e = Assert.Throws<InvalidOperationException>(() => x.ToArray())!;
        Assert.That(e.Message, Does.Contain("ToArray").And.Contain("freed"));
        e = Assert.Throws<InvalidOperationException>(() => ids.ToIntArray())!;
        Assert.That(e.Message, Does.Contain("ToIntArray").And.Contain("freed"));
        e = Assert.Throws<InvalidOperationException>(() => arena.View(x, 0, new Shape(8)))!;
        Assert.That(e.Message, Does.Contain("freed"));
        e = Assert.Throws<InvalidOperationException>(() => Ops.Linear(tape, x.Reshape(2, 4), w.Value))!;
        Assert.That(e.Message, Does.Contain("freed"), "a view of a stale tensor is stale");
    }

    [Test]
    public void ReadingADisposedPersistentTensorThrows()
    {
        var w = new Parameter(Cpu, "w", new Shape(3, 4));
        var value = w.Value;
        w.Dispose();
        var e = Assert.Throws<InvalidOperationException>(() => value.ToArray())!;
        Assert.That(e.Message, Does.Contain("ToArray").And.Contain("freed"));
    }

    [Test]
    public void CheckedArenaHandsOutUninitialisedF32AsNaN()
    {
        var profiled = new ProfilingBackend(Cpu);
        using var arena = new Arena(profiled, 1 << 16, recycleHandles: false);
        var zeros = arena.Zeros(new Shape(3, 5));
        var uninitialised = arena.Allocate(2, 7);
        Assert.That(uninitialised.ToArray(), Is.All.NaN);
        Assert.That(zeros.ToArray(), Is.All.Zero);
        arena.Reset();
        Assert.That(arena.Allocate(3, 5).ToArray(), Is.All.NaN, "memory that held zeros before the reset");
        profiled.ResetCounters();
        arena.Allocate(new Shape(4), DType.I32);
        Assert.That(profiled.Table().Where(r => r.Op == "Fill"), Is.Empty, "an I32 allocation (Fill writes no NaN into ints) is left as it is");
    }
}
