using NUnit.Framework;
using System.Text.Json;

namespace VwLmm.Tests.Data.Images;

/// <summary>The files written by fixtures/images/make_fixtures.py (PIL 9.4 + numpy) and its manifest.json.</summary>
internal static class ImageFixtures
{
    public static string Dir => Path.Combine(AppContext.BaseDirectory, "fixtures", "images");

    public static string PathOf(string folder, string file) => Path.Combine(Dir, folder, file);

    /// <summary>One test case per manifest entry of <paramref name="section"/>, named by its "file".</summary>
    public static IEnumerable<TestCaseData> Cases(string section)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Dir, "manifest.json")));
        return doc.RootElement.GetProperty(section).EnumerateArray()
                  .Select(e => new TestCaseData(e.Clone()).SetArgDisplayNames(e.GetProperty("file").GetString()!))
                  .ToList();
    }
}
