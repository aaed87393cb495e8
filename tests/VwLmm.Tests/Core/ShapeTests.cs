using NUnit.Framework;
using VwLmm.Core;

namespace VwLmm.Tests.Core;

public class ShapeTests
{
    [Test]
    public void NumelAndEquality()
    {
        var s = new Shape(2, 3, 5);
        Assert.That(s.Numel, Is.EqualTo(30));
        Assert.That(s, Is.EqualTo(new Shape(2, 3, 5)));
        Assert.That(s[-1], Is.EqualTo(5));
        Assert.That(s.ToString(), Is.EqualTo("[2,3,5]"));
    }

    [Test]
    public void NegativeDimensionIsRejected() =>
        Assert.Throws<ArgumentException>(() => _ = new Shape(2, -1));
}
