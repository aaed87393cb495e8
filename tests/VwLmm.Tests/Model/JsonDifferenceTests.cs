using System.Text.Json;
using NUnit.Framework;
using VwLmm.Model;

namespace VwLmm.Tests.Model;

public class JsonDifferenceTests
{
    private static (string, string, string)? First(string was, string now)
    {
        using var a = JsonDocument.Parse(was);
        using var b = JsonDocument.Parse(now);
        return JsonDifference.First(a.RootElement, b.RootElement);
    }

    [Test]
    public void NamesTheFirstRecordedKeyThatChangedOrWentMissing()
    {
        Assert.That(First("""{"a": 1, "b": [1, 2]}""", """{"b": [1,2], "a": 1.0, "c": 3}"""), Is.Null, "formatting, order and added keys are no difference");
        Assert.That(First("""{"a": 1, "b": {"x": [1, 2]}}""", """{"a": 1, "b": {"x": [1, 3]}}"""), Is.EqualTo(("b", """{"x":[1,2]}""", """{"x":[1,3]}""")));
        Assert.That(First("""{"a": 1, "b": 2}""", """{"b": 2}"""), Is.EqualTo(("a", "1", "nothing")));
        Assert.That(First("""{"a": null}""", """{"a": 0}"""), Is.EqualTo(("a", "null", "0")));
    }
}
