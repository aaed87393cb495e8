using NUnit.Framework;
using VwLmm.Data.ShapesGrid;

namespace VwLmm.Tests.Data;

public class ShapesRngTests
{
    private static ulong[] Reference(string name)
    {
        string path = Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", "data", "rng_reference.txt");
        var line = File.ReadAllLines(path).Single(l => l.StartsWith(name + " ", StringComparison.Ordinal));
        return line.Split(' ').Skip(2).Select(ulong.Parse).ToArray();
    }

    [Test]
    public void SplitMix64MatchesReference()
    {
        ulong state = 1234567;
        var got = Enumerable.Range(0, 4).Select(_ => ShapesRng.SplitMix64(ref state)).ToArray();
        Assert.That(got, Is.EqualTo(Reference("splitmix64")));
    }

    [Test]
    public void Xoshiro256StarStarMatchesReference()
    {
        var rng = new ShapesRng(42);
        var got = Enumerable.Range(0, 6).Select(_ => rng.NextUInt64()).ToArray();
        Assert.That(got, Is.EqualTo(Reference("xoshiro256ss")));
    }

    [Test]
    public void BoundedDrawsStayInRangeAndCoverIt()
    {
        var rng = new ShapesRng(7);
        var seen = new int[5];
        for (int i = 0; i < 5000; i++) seen[rng.Next(-2, 2) + 2]++;
        Assert.That(seen, Is.All.GreaterThan(800));
        for (int i = 0; i < 1000; i++) Assert.That(rng.NextDouble(), Is.InRange(0.0, 1.0).And.LessThan(1.0));
        Assert.Throws<ArgumentException>(() => rng.Next(0));
    }

    [Test]
    public void DerivedStreamsDifferByKey()
    {
        ulong a = ShapesRng.Derive(1, 2, 3).NextUInt64(), b = ShapesRng.Derive(1, 3, 2).NextUInt64(), c = ShapesRng.Derive(1, 2, 3).NextUInt64();
        Assert.That(a, Is.Not.EqualTo(b));
        Assert.That(a, Is.EqualTo(c));
    }
}
