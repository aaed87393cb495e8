using NUnit.Framework;
using VwLmm.Data.Conversations;

namespace VwLmm.Tests.Data;

public class LlavaDatasetTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "vwlmm-llava-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path.Combine(_dir, "img"));
        File.WriteAllBytes(Path.Combine(_dir, "img", "a.png"), [1, 2, 3]);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    private string WriteJson(string json)
    {
        string path = Path.Combine(_dir, "data.json");
        File.WriteAllText(path, json);
        return path;
    }

    [Test]
    public void ReadsImageTextOnlyAndMultiTurnSamples()
    {
        string path = WriteJson("""
            [
              {"id": "x1", "image": "a.png", "conversations": [
                 {"from": "human", "value": "<image>\nwhat is it ?"}, {"from": "gpt", "value": "a square"},
                 {"from": "human", "value": "colour ?"}, {"from": "gpt", "value": "red"}]},
              {"id": 7, "conversations": [{"from": "human", "value": "hello"}, {"from": "gpt", "value": "hi"}]},
              {"conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "y"}]}
            ]
            """);
        var ds = LlavaDataset.Load(path, Path.Combine(_dir, "img"));
        Assert.That(ds.Samples, Has.Count.EqualTo(3));
        Assert.That(ds.Samples[0].Turns, Has.Count.EqualTo(4));
        Assert.That(ds.Samples[0].Turns[0], Is.EqualTo(new Turn(Speaker.Human, "<image>\nwhat is it ?")));
        Assert.That(ds.ImagePath(ds.Samples[0]), Is.EqualTo(Path.Combine(_dir, "img", "a.png")));
        Assert.That(ds.Samples[1].Id, Is.EqualTo("7"));
        Assert.That(ds.Samples[1].HasImage, Is.False);
        Assert.That(ds.Samples[2].Id, Is.EqualTo("2"));
    }

    [Test]
    public void WriterRoundTrips()
    {
        var samples = new[]
        {
            new ConversationSample("a", "a.png", [new(Speaker.Human, "<image>\n\"quoted\" é"), new(Speaker.Gpt, "ok")]),
            new ConversationSample("b", null, [new(Speaker.Human, "t"), new(Speaker.Gpt, "u"), new(Speaker.Human, "v"), new(Speaker.Gpt, "w")]),
        };
        string path = Path.Combine(_dir, "out", "w.json");
        LlavaDataset.Write(path, samples);
        var back = LlavaDataset.Load(path, Path.Combine(_dir, "img")).Samples;
        Assert.That(back, Has.Count.EqualTo(2));
        for (int i = 0; i < 2; i++)
        {
            Assert.That(back[i].Id, Is.EqualTo(samples[i].Id));
            Assert.That(back[i].Image, Is.EqualTo(samples[i].Image));
            Assert.That(back[i].Turns, Is.EqualTo(samples[i].Turns));
        }
        Assert.That(Directory.GetFiles(Path.Combine(_dir, "out")), Has.Length.EqualTo(1), "no temp file left");
    }

    private const string Ok = """{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}""";

    [TestCase("[{\"conversations\": [" + Ok + "]},\n {\"id\": 1, \"conversations\": [}]", "line 2")]
    [TestCase("[{\"id\": \"s\"}]", "entry 0 (id s): missing field \"conversations\"")]
    [TestCase("[{\"conversations\": [" + Ok + "]}, {\"conversations\": [{\"from\": \"gpt\", \"value\": \"a\"}, {\"from\": \"human\", \"value\": \"q\"}]}]",
              "entry 1 (id 1): conversations: turn 0 is from gpt")]
    [TestCase("[{\"conversations\": [{\"from\": \"human\", \"value\": \"<image>\\nq\"}, {\"from\": \"gpt\", \"value\": \"a\"}]}]",
              "placeholder but the sample has no image")]
    [TestCase("[{\"conversations\": [{\"from\": \"bot\", \"value\": \"q\"}]}]", "conversations[0]: field \"from\" is 'bot'")]
    [TestCase("[{\"conversations\": [{\"from\": \"human\"}]}]", "conversations[0]: missing string field \"value\"")]
    [TestCase("{\"conversations\": []}", "top level must be an array")]
    [TestCase("[{\"image\": 3, \"conversations\": [" + Ok + "]}]", "field \"image\" must be a non-empty string")]
    public void BadEntriesNameFileEntryAndField(string json, string expected)
    {
        string path = WriteJson(json);
        var e = Assert.Throws<InvalidDataException>(() => LlavaDataset.Load(path, Path.Combine(_dir, "img")))!;
        Assert.That(e.Message, Does.StartWith(path + ": "));
        Assert.That(e.Message, Does.Contain(expected));
        Assert.That(e.Message, Does.Not.Contain("\n"));
    }

    [Test]
    public void TextThatIsNotUtf8IsNamedWithItsEntry()
    {
        string path = Path.Combine(_dir, "bytes.json");
        byte[] json = System.Text.Encoding.UTF8.GetBytes("[{\"conversations\": [" + Ok + "]}, {\"conversations\": [{\"from\": \"human\", \"value\": \"q?\"}, {\"from\": \"gpt\", \"value\": \"a\"}]}]");
        json[Array.LastIndexOf(json, (byte)'?')] = 0xC3; // a lead byte with no continuation
        File.WriteAllBytes(path, json);
        var e = Assert.Throws<InvalidDataException>(() => LlavaDataset.Load(path, Path.Combine(_dir, "img")))!;
        Assert.That(e.Message, Does.StartWith(path + ": entry 1: a string is not valid text").And.Not.Contain("\n"));
    }

    [Test]
    public void MissingImageFileIsNamed()
    {
        string path = WriteJson("[{\"image\": \"nope.png\", \"conversations\": [" + Ok + "]}]");
        var e = Assert.Throws<FileNotFoundException>(() => LlavaDataset.Load(path, Path.Combine(_dir, "img")))!;
        Assert.That(e.Message, Does.Contain(path).And.Contain("entry 0").And.Contain("nope.png"));
    }

    [Test]
    public void ImageWithoutPlaceholderIsAccepted()
    {
        string path = WriteJson("[{\"image\": \"a.png\", \"conversations\": [" + Ok + "]}]");
        var sample = LlavaDataset.Load(path, Path.Combine(_dir, "img")).Samples[0];
        var ids = ConversationTemplate.VicunaV1.Encode(sample, new PieceTestTokenizer()).InputIds;
        Assert.That(ids.Count(i => i == Llava.ImageTokenIndex), Is.EqualTo(1));
    }
}
