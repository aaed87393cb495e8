using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Data.ShapesGrid;

namespace VwLmm.Tests.Data;

/// <summary>ShapesGrid data must not change under anyone's feet: pin the generator it draws from and its stream derivation.</summary>
public class ShapesGridStreamsTests
{
    [Test]
    public void CoreRngMatchesXoshiroReference()
    {
        string path = Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", "data", "rng_reference.txt");
        var line = File.ReadAllLines(path).Single(l => l.StartsWith("xoshiro256ss 42 ", StringComparison.Ordinal));
        var expected = line.Split(' ').Skip(2).Select(ulong.Parse).ToArray();
        var rng = new Rng(42);
        Assert.That(Enumerable.Range(0, expected.Length).Select(_ => rng.NextUInt64()), Is.EqualTo(expected));
    }

    [Test]
    public void DerivedStreamsAreReproducibleAndDistinct()
    {
        ulong a = Streams.Derive(1, 2, 3).NextUInt64(), b = Streams.Derive(1, 3, 2).NextUInt64(), c = Streams.Derive(1, 2, 3).NextUInt64();
        Assert.That(a, Is.EqualTo(c));
        Assert.That(a, Is.Not.EqualTo(b));
        Assert.That(Streams.Derive(1, 2).NextUInt64(), Is.Not.EqualTo(a));
    }

    [Test]
    public void InclusiveRangeCoversBothEnds()
    {
        var rng = new Rng(7);
        var seen = new int[5];
        for (int i = 0; i < 5000; i++) seen[rng.Next(-2, 2) + 2]++;
        Assert.That(seen, Is.All.GreaterThan(800));
    }
}
