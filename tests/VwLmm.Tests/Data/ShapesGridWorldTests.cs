using System.Text.RegularExpressions;
using NUnit.Framework;
using VwLmm.Data.Conversations;
using VwLmm.Data.Images;
using VwLmm.Data.ShapesGrid;

namespace VwLmm.Tests.Data;

public class ShapesGridWorldTests
{
    private static readonly string[] ColourNames = ["red", "green", "blue", "yellow", "white", "purple"];
    private static readonly string[] ShapeNames = ["circle", "square", "triangle", "cross"];
    private static readonly string[] PluralNames = ["circles", "squares", "triangles", "crosses"];

    [Test]
    public void SameSeedGivesIdenticalPixelsAndText()
    {
        var a = new ShapesGridWorld(11);
        var b = new ShapesGridWorld(11);
        var other = new ShapesGridWorld(12);
        for (int i = 0; i < 20; i++)
        {
            var sa = a.Sample(Split.Train, i);
            var sb = b.Sample(Split.Train, i);
            Assert.That(sb.Image.Pixels, Is.EqualTo(sa.Image.Pixels));
            Assert.That(sb.Caption, Is.EqualTo(sa.Caption));
            Assert.That(sb.Questions, Is.EqualTo(sa.Questions));
            Assert.That(b.PretrainingText(i), Is.EqualTo(a.PretrainingText(i)));
            Assert.That(other.Sample(Split.Train, i).Image.Pixels, Is.Not.EqualTo(sa.Image.Pixels));
        }
        Assert.That(a.Sample(Split.Train, 5).Image.Pixels, Is.EqualTo(a.Stream(Split.Train, 3).Skip(2).First().Image.Pixels));
        Assert.That(a.Sample(Split.Test, 5).Caption, Is.Not.EqualTo(a.Sample(Split.Train, 5).Caption));
    }

    [Test]
    public void HeldOutCombinationsNeverReachTraining()
    {
        var world = new ShapesGridWorld(3);
        Assert.That(world.HeldOut, Has.Count.EqualTo(5));
        foreach (var colour in Enum.GetValues<ObjectColour>())
            Assert.That(world.TrainCombos.Count(c => c.Colour == colour), Is.GreaterThanOrEqualTo(2));
        foreach (var shape in Enum.GetValues<ObjectShape>())
            Assert.That(world.TrainCombos.Count(c => c.Shape == shape), Is.GreaterThanOrEqualTo(2));

        var phrases = world.HeldOut.SelectMany(c => new[]
        {
            $" {ColourNames[(int)c.Colour]} {ShapeNames[(int)c.Shape]} ", $" {ColourNames[(int)c.Colour]} {PluralNames[(int)c.Shape]} ",
        }).ToArray();
        var trainText = new List<string>();
        for (int i = 0; i < 300; i++)
        {
            var s = world.Sample(Split.Train, i);
            Assert.That(s.Scene.Objects.Where(o => world.IsHeldOut(o.Combo)), Is.Empty, $"train image {i}");
            trainText.Add(s.Caption);
            trainText.AddRange(s.Questions.Select(q => q.Question + " " + q.Answer));
            trainText.AddRange(world.TextOnlyConversation(Split.Train, i).Turns.Select(t => t.Value));
            trainText.Add(world.PretrainingText(i));
            Assert.That(world.Sample(Split.Test, i).Scene.Objects.Any(o => world.IsHeldOut(o.Combo)), $"test image {i}");
        }
        trainText.AddRange(world.TokenizerCorpus(50).Skip(1));
        var leaks = trainText.Where(text => phrases.Any(phrase => (" " + text + " ").Contains(phrase, StringComparison.Ordinal)));
        Assert.That(leaks, Is.Empty);
    }

    [Test]
    public void PatchLabelsMatchDrawnPixels([Values(64, 32)] int imageSize, [Values] bool varySize)
    {
        var world = new ShapesGridWorld(5, new ShapesGridOptions { ImageSize = imageSize, MaxObjects = 6, VarySize = varySize });
        int largeCells = 0;
        int p = world.Options.PatchSize, grid = world.Options.Grid, objectCells = 0, shapeHits = 0;
        for (int i = 0; i < 40; i++)
        {
            var sample = world.Sample(i % 2 == 0 ? Split.Train : Split.Test, i);
            string[] words = sample.Scene.PatchWords();
            Assert.That(words, Has.Length.EqualTo(grid * grid));
            for (int r = 0; r < grid; r++)
                for (int c = 0; c < grid; c++)
                {
                    var (colourCounts, mask) = PaletteMatches(sample.Image, c * p, r * p, p);
                    string[] label = words[r * grid + c].Split(' ');
                    if (label.Length == 1)
                    {
                        Assert.That(colourCounts, Is.All.Zero, $"background cell ({r},{c}) = {label[0]} has object-coloured pixels");
                        Assert.That(label[0], Is.EqualTo(r < sample.Scene.Horizon ? "sky" : Enum.GetName(sample.Scene.Ground)!.ToLowerInvariant()));
                        continue;
                    }
                    objectCells++;
                    int colour = Array.IndexOf(ColourNames, label[0]);
                    bool large = sample.Scene.ObjectAt(r, c)!.Value.Size == ObjectSize.Large;
                    Assert.That(colourCounts[colour], Is.GreaterThanOrEqualTo(large ? p * p / 8 : p * p / 16), $"object cell ({r},{c}) {words[r * grid + c]}");
                    Assert.That(colourCounts.Where((n, k) => k != colour), Is.All.Zero);
                    if (!large) continue;
                    largeCells++;
                    if (ClassifyShape(mask, p) == label[1]) shapeHits++;
                }
        }
        Assert.That(objectCells, Is.GreaterThan(50));
        Assert.That(largeCells, Is.GreaterThan(varySize ? 20 : 50));
        Assert.That(shapeHits, Is.GreaterThanOrEqualTo(largeCells * 95 / 100), "large shapes recognisable from their pixels");
    }

    [Test]
    public void PaintRecoloursShapesOrReplacesThemWithBlobs()
    {
        var world = new ShapesGridWorld(5, new ShapesGridOptions { ImageSize = 64, MaxObjects = 6 });
        int p = world.Options.PatchSize;
        (int, int, int) black = (0, 0, 0);
        int shapeHits = 0, blobShapes = 0, cells = 0;
        for (int i = 0; i < 20; i++)
        {
            var scene = world.SceneAt(Split.Train, i);
            var plain = world.Render(scene);
            var recoloured = ShapesGridRenderer.Render(scene, 64, p, _ => new ObjectPaint(black, Blob: false));
            var blobs = ShapesGridRenderer.Render(scene, 64, p, o => new ObjectPaint(ShapesGridRenderer.Palette[(int)o.Colour], Blob: true));
            foreach (var o in scene.Objects)
            {
                cells++;
                var (paletteCounts, _) = PaletteMatches(recoloured, o.Column * p, o.Row * p, p);
                Assert.That(paletteCounts, Is.All.Zero, "a recoloured object keeps no palette pixels");
                var mask = new bool[p, p];
                for (int y = 0; y < p; y++)
                    for (int x = 0; x < p; x++)
                    {
                        var px = recoloured.Pixel(o.Column * p + x, o.Row * p + y);
                        mask[y, x] = px[0] + px[1] + px[2] < 3 * 40;
                    }
                if (ClassifyShape(mask, p) == ShapeNames[(int)o.Shape]) shapeHits++;
                var (blobCounts, blobMask) = PaletteMatches(blobs, o.Column * p, o.Row * p, p);
                Assert.That(blobCounts[(int)o.Colour], Is.GreaterThan(p * p / 8), "a blob keeps its palette colour");
                if (ClassifyShape(blobMask, p) == ShapeNames[(int)o.Shape]) blobShapes++;
            }
            for (int y = 0; y < 64; y++)
                for (int x = 0; x < 64; x++)
                    if (scene.ObjectAt(y / p, x / p) is null)
                        Assert.That(recoloured.Pixel(x, y).ToArray(), Is.EqualTo(plain.Pixel(x, y).ToArray()), "background untouched");
        }
        Assert.That(cells, Is.GreaterThan(40));
        Assert.That(shapeHits, Is.GreaterThanOrEqualTo(cells * 95 / 100), "recoloured shapes keep their outline");
        Assert.That(blobShapes, Is.LessThan(cells / 2), "blobs do not look like the object's shape");
    }

    [Test]
    public void QuestionsAndCaptionsAgreeWithGroundTruth()
    {
        var world = new ShapesGridWorld(9, new ShapesGridOptions { MaxObjects = 5, MaxQuestions = 4 });
        var kinds = new HashSet<QuestionKind>();
        var answers = new HashSet<string>();
        for (int i = 0; i < 300; i++)
        {
            var s = world.Sample(i % 3 == 0 ? Split.Test : Split.Train, i);
            Assert.That(s.Questions, Has.Count.InRange(1, 4));
            Assert.That(s.Questions.Select(q => q.Question).Distinct().Count(), Is.EqualTo(s.Questions.Count));
            foreach (var qa in s.Questions)
            {
                Assert.That(Solve(qa.Question, s.Scene), Is.EqualTo(qa.Answer), qa.Question);
                kinds.Add(qa.Kind);
                answers.Add(qa.Answer);
            }
            Assert.That(ParseCaption(s.Caption), Is.EqualTo(Describe(s.Scene)), s.Caption);
        }
        Assert.That(kinds, Has.Count.EqualTo(5));
        Assert.That(answers, Does.Contain("yes").And.Contain("no").And.Contain("0").And.Contain("sky"));
    }

    [Test]
    public void QaConversationAsksOnlyTheGivenKindsUnlessTheSceneAllowsNone()
    {
        var world = new ShapesGridWorld(9);
        int fallbacks = 0;
        for (int i = 0; i < 400; i++)
        {
            var sample = world.Sample(Split.Train, i);
            var conv = world.QaConversation(Split.Train, i, "img", [QuestionKind.Colour, QuestionKind.Shape]);
            var scene = sample.Scene;
            bool lookupPossible = scene.Objects.Any(o => LookupAllowed(world, scene, o, QuestionKind.Colour) || LookupAllowed(world, scene, o, QuestionKind.Shape));
            Assert.That(conv.Turns[0].Value, Does.StartWith(Llava.ImagePlaceholder + "\n"));
            for (int t = 0; t < conv.Turns.Count; t += 2)
            {
                string question = conv.Turns[t].Value.Replace(Llava.ImagePlaceholder + "\n", "");
                Assert.That(Solve(question, scene), Is.EqualTo(conv.Turns[t + 1].Value), question);
                if (lookupPossible) Assert.That(question, Does.StartWith("what colour is the").Or.StartWith("what shape is the"), $"sample {i}");
            }
            if (!lookupPossible) fallbacks++;
        }
        Assert.That(fallbacks, Is.InRange(1, 60), "scenes that allow no colour or shape question are rare but occur");
    }

    [Test]
    public void CellQuestionsFollowTheKindsQuestionsAndAskAboutObjectsTheyDoNot()
    {
        var world = new ShapesGridWorld(9);
        QuestionKind[] kinds = [QuestionKind.Colour, QuestionKind.Shape];
        int fresh = 0, colourFirst = 0;
        for (int i = 0; i < 300; i++)
        {
            var scene = world.SceneAt(Split.Train, i);
            var plain = world.QaConversation(Split.Train, i, "img", kinds).Turns;
            var conv = world.QaConversation(Split.Train, i, "img", kinds, cellQuestions: true).Turns;
            Assert.That(conv.Take(plain.Count).Select(t => t.Value), Is.EqualTo(plain.Select(t => t.Value)), $"sample {i}: the kinds' questions first, unchanged");
            Assert.That(conv, Has.Count.EqualTo(plain.Count + 4), $"sample {i}");
            var cells = new[] { conv[^4].Value, conv[^2].Value };
            Assert.That(cells.Count(q => q.StartsWith("what colour is in row ")), Is.EqualTo(1), $"sample {i}: {string.Join(" | ", cells)}");
            Assert.That(cells.Count(q => q.StartsWith("what shape is in row ")), Is.EqualTo(1), $"sample {i}: {string.Join(" | ", cells)}");
            Assert.That(Solve(cells[0], scene), Is.EqualTo(conv[^3].Value), cells[0]);
            Assert.That(Solve(cells[1], scene), Is.EqualTo(conv[^1].Value), cells[1]);
            colourFirst += cells[0].StartsWith("what colour") ? 1 : 0;
            // With two objects the other questions did not name, the cell questions take both; asked objects only otherwise.
            var named = Enumerable.Range(0, plain.Count / 2).Select(t => plain[2 * t].Value.Replace(Llava.ImagePlaceholder + "\n", ""))
                .Where(q => q.StartsWith("what colour is the ") || q.StartsWith("what shape is the ")).Select(q => Asked(q, scene)).ToHashSet();
            var picked = cells.Select(q => ObjectInCell(q, scene)).ToArray();
            if (scene.Objects.Count(o => !named.Contains(o)) >= 2)
            {
                Assert.That(picked.Any(named.Contains), Is.False, $"sample {i}");
                Assert.That(picked[0], Is.Not.EqualTo(picked[1]), $"sample {i}");
                fresh++;
            }
        }
        Assert.That(fresh, Is.GreaterThan(30));
        Assert.That(colourFirst, Is.InRange(100, 200), "either order, about as often");
        Assert.That(world.QaConversation(Split.Train, 7, "img", kinds, cellQuestions: true).Turns.Select(t => t.Value),
            Is.EqualTo(new ShapesGridWorld(9).QaConversation(Split.Train, 7, "img", kinds, cellQuestions: true).Turns.Select(t => t.Value)));
    }

    [Test]
    public void TrainingLookupsHaveNoDistractorWithAnAttributeTheAskedOneNeverComesWith()
    {
        var world = new ShapesGridWorld(9);
        int lookups = 0, testLookupsWithSuchADistractor = 0;
        for (int i = 0; i < 400; i++)
        {
            foreach (var split in new[] { Split.Train, Split.Test })
            {
                var sample = world.Sample(split, i);
                foreach (var qa in sample.Questions.Where(q => q.Kind is QuestionKind.Colour or QuestionKind.Shape))
                {
                    var o = Asked(qa.Question, sample.Scene);
                    bool allowed = LookupAllowed(world, sample.Scene, o, qa.Kind);
                    if (split == Split.Train)
                    {
                        Assert.That(allowed, $"train {i}: '{qa.Question}' beside a distractor whose attribute never comes with the asked one");
                        lookups++;
                    }
                    else if (!allowed) testLookupsWithSuchADistractor++;
                }
            }
        }
        Assert.That(lookups, Is.GreaterThan(100));
        Assert.That(testLookupsWithSuchADistractor, Is.GreaterThan(10), "the test split asks regardless");
    }

    [Test]
    public void TwinsAskTheFirstShapeQuestionThatAllowsItOfTheSceneWithTheAskedObjectRecoloured()
    {
        var world = new ShapesGridWorld(9);
        QuestionKind[] kinds = [QuestionKind.Colour, QuestionKind.Shape];
        int twins = 0, skippedColourQuestions = 0;
        for (int i = 0; i < 400; i++)
        {
            var scene = world.SceneAt(Split.Train, i);
            var turns = world.QaConversation(Split.Train, i, "img", kinds).Turns;
            var twin = world.Twin(i, "img", kinds);
            string Question(string turn) => turn.Replace(Llava.ImagePlaceholder + "\n", "");
            // Questions before the twinned one allow no recolouring; with no twin, none does.
            int k = twin?.Question ?? turns.Count / 2;
            for (int j = 0; j < k; j++)
            {
                Assert.That(Recolourings(world, scene, Question(turns[2 * j].Value)), Is.Empty, $"sample {i}, question {j}");
                if (Question(turns[2 * j].Value).StartsWith("what colour", StringComparison.Ordinal)) skippedColourQuestions++;
            }
            if (twin is null) continue;
            Assert.That(world.Twin(i, "img", kinds)!.Conversation.Turns, Is.EqualTo(twin.Conversation.Turns), "a function of the index");
            string question = Question(turns[2 * k].Value), answer = turns[2 * k + 1].Value;
            var asked = Asked(question, scene);
            Assert.That(twin.Conversation.Turns, Has.Count.EqualTo(2));
            Assert.That(twin.Conversation.Turns[0].Value, Does.StartWith(Llava.ImagePlaceholder + "\n"));
            Assert.That(twin.Conversation.Image, Is.EqualTo("img"));
            string twinQuestion = Question(twin.Conversation.Turns[0].Value);
            Assert.That(twinQuestion, Does.StartWith("what shape is the "));
            Assert.That(twin.Conversation.Turns[1].Value, Is.EqualTo(answer), twinQuestion);
            Assert.That(Solve(twinQuestion, twin.Scene), Is.EqualTo(answer), twinQuestion);
            var recoloured = Asked(twinQuestion, twin.Scene);
            Assert.That(Recolourings(world, scene, question), Does.Contain(recoloured), $"sample {i}: '{question}' → '{twinQuestion}'");
            Assert.That(twin.Scene.Objects, Is.EqualTo(scene.Objects.Select(o => o == asked ? recoloured : o)), "only the asked object changes");
            Assert.That((twin.Scene.Grid, twin.Scene.Horizon, twin.Scene.Ground, twin.Scene.Seed), Is.EqualTo((scene.Grid, scene.Horizon, scene.Ground, scene.Seed)));
            Assert.That(twin.Scene.Objects.Where(o => world.IsHeldOut(o.Combo)), Is.Empty);
            twins++;
        }
        Assert.That(twins, Is.GreaterThan(100));
        Assert.That(skippedColourQuestions, Is.GreaterThan(20), "colour questions get no twin");
    }

    /// <summary>The objects a shape question's subject may become in its twin: the same cell and shape, another colour
    /// that makes a training pair with it, which no other object has, and a question about it that training may ask.
    /// None for any other question.</summary>
    private static List<GridObject> Recolourings(ShapesGridWorld world, Scene scene, string question)
    {
        if (!question.StartsWith("what shape is", StringComparison.Ordinal)) return [];
        var o = Asked(question, scene);
        var result = new List<GridObject>();
        foreach (var c in Enum.GetValues<ObjectColour>())
        {
            var t = o with { Colour = c };
            if (c == o.Colour || world.IsHeldOut(t.Combo)) continue;
            var changed = new Scene(scene.Grid, scene.Horizon, scene.Ground, scene.Objects.Select(p => p == o ? t : p).ToArray(), scene.Seed);
            if (LookupAllowed(world, changed, t, QuestionKind.Shape)) result.Add(t);
        }
        return result;
    }

    /// <summary>
    /// The object a colour or shape question asks about may be asked about in training: it is the only one with its shape
    /// (colour), and every other object's colour (shape) comes with that shape (colour) in a training combination.
    /// </summary>
    private static bool LookupAllowed(ShapesGridWorld world, Scene scene, GridObject o, QuestionKind kind) => kind == QuestionKind.Colour
        ? scene.Objects.Count(p => p.Shape == o.Shape) == 1 && scene.Objects.All(p => p == o || world.TrainCombos.Contains(new Combo(p.Colour, o.Shape)))
        : scene.Objects.Count(p => p.Colour == o.Colour) == 1 && scene.Objects.All(p => p == o || world.TrainCombos.Contains(new Combo(o.Colour, p.Shape)));

    private static GridObject Asked(string question, Scene scene)
    {
        Match m;
        if ((m = Regex.Match(question, "^what colour is the (\\w+) \\?$")).Success)
            return scene.Objects.Single(o => ShapeNames[(int)o.Shape] == m.Groups[1].Value);
        m = Regex.Match(question, "^what shape is the (\\w+) object \\?$");
        return scene.Objects.Single(o => ColourNames[(int)o.Colour] == m.Groups[1].Value);
    }

    [Test]
    public void VocabularyCoversAllTextAndPromptsStayShort()
    {
        var world = new ShapesGridWorld(2, new ShapesGridOptions { VarySize = true });
        var vocab = world.Vocabulary.ToHashSet();
        var tok = new PieceTestTokenizer();
        int longest = 0, longestImageConversation = 0;
        for (int i = 0; i < 400; i++)
        {
            var conv = world.InstructionConversation(Split.Train, i, "x.png");
            var texts = conv.Turns.Select(t => t.Value.Replace("<image>", "")).Append(world.PretrainingText(i))
                .Append(world.Sample(Split.Train, i).Caption);
            var unknown = texts.SelectMany(t => t.Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries)).Where(w => !vocab.Contains(w));
            Assert.That(unknown, Is.Empty);
            var prompt = ConversationTemplate.ShapesChat.EncodePrompt(conv.Turns.Take(1).ToArray(), conv.HasImage, tok);
            longest = Math.Max(longest, prompt.InputIds.Count(id => id >= 0));
            if (conv.HasImage)
                longestImageConversation = Math.Max(longestImageConversation, ConversationTemplate.ShapesChat.Encode(conv, tok).InputIds.Count(id => id >= 0));
        }
        Assert.That(longestImageConversation, Is.LessThanOrEqualTo(48), "whole image QA conversations fit 48 text tokens");
        Assert.That(longest, Is.LessThanOrEqualTo(48));
        Assert.That(world.TokenizerCorpus(3).First().Split(' '), Is.EqualTo(world.Vocabulary));
    }

    [Test]
    public void TextOnlySamplesAppearAtTheConfiguredRate()
    {
        var world = new ShapesGridWorld(4, new ShapesGridOptions { TextOnlyFraction = 0.25 });
        int textOnly = Enumerable.Range(0, 2000).Count(i => world.IsTextOnly(Split.Train, i));
        Assert.That(textOnly, Is.InRange(400, 600));
        var conv = world.InstructionConversation(Split.Train, Enumerable.Range(0, 100).First(i => world.IsTextOnly(Split.Train, i)), "x.png");
        Assert.That(conv.HasImage, Is.False);
        Assert.That(conv.Turns[0].Value, Does.Contain("sky above").And.Not.Contain("<image>"));
        Assert.That(Solve(conv.Turns[0].Value.Split(" . ")[1], ParseCaptionScene(conv.Turns[0].Value.Split(" . ")[0])),
                    Is.EqualTo(conv.Turns[1].Value));
    }

    [TestCase(64, 5)]
    [TestCase(60, 8)]
    [TestCase(16, 8)]
    public void BadOptionsAreRejected(int imageSize, int patchSize) =>
        Assert.Throws<ArgumentException>(() => _ = new ShapesGridWorld(1, new ShapesGridOptions { ImageSize = imageSize, PatchSize = patchSize }));

    [Test]
    public void WriterOutputReadsBackThroughLlavaReader([Values] Split split)
    {
        string dir = Path.Combine(Path.GetTempPath(), "vwlmm-shapes-" + Guid.NewGuid().ToString("N"));
        try
        {
            var options = new ShapesGridOptions { TextOnlyFraction = 0.2 };
            ShapesGridWriter.Write(dir, 30, 17, FakePng.Save, split, options);
            var world = new ShapesGridWorld(17, options);
            var data = LlavaDataset.Load(Path.Combine(dir, ShapesGridWriter.DataFile), dir);
            var captions = LlavaDataset.Load(Path.Combine(dir, ShapesGridWriter.CaptionsFile), dir);
            var labels = ShapesGridWriter.ReadPatchLabels(Path.Combine(dir, ShapesGridWriter.PatchLabelsFile));
            Assert.That(data.Samples, Has.Count.EqualTo(30));
            // The test split is the demo's evaluation images, all of them.
            Assert.That(data.Samples.Count(s => !s.HasImage), split == Split.Train ? Is.GreaterThan(0) : Is.Zero);
            Assert.That(captions.Samples, Has.Count.EqualTo(data.Samples.Count(s => s.HasImage)));
            Assert.That(labels.HeldOut, Is.EqualTo(world.HeldOut.Select(c => c.ToString())));
            var tok = new PieceTestTokenizer();
            for (int i = 0; i < 30; i++)
            {
                var expected = world.InstructionConversation(split, i, $"images/{i:D4}.png");
                Assert.That(data.Samples[i].Turns, Is.EqualTo(expected.Turns));
                Assert.That(data.Samples[i].Image, Is.EqualTo(expected.Image));
                if (!expected.HasImage) continue;
                var sample = world.Sample(split, i);
                Assert.That(FakePng.Load(data.ImagePath(data.Samples[i])).Pixels, Is.EqualTo(sample.Image.Pixels));
                Assert.That(labels.Patches[expected.Image!], Is.EqualTo(sample.Scene.PatchWords()));
                var caption = captions.Samples.Single(s => s.Image == expected.Image);
                var encoded = ConversationTemplate.Plain.Encode(caption, tok);
                Assert.That(tok.Decode(encoded.InputIds.Where(id => id >= 0).ToArray()), Is.EqualTo(sample.Caption + "\n"));
                Assert.That(ConversationTemplate.ShapesChat.Encode(data.Samples[i], tok).InputIds, Does.Contain(Llava.ImageTokenIndex));
            }
            Assert.That(Directory.GetFiles(dir).Select(Path.GetFileName),
                        Is.EquivalentTo(new[] { "data.json", "captions.json", "patch_labels.json" }));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void InvalidScenesAndPatchFilesAreRejected()
    {
        var o = new GridObject(1, 1, ObjectColour.Red, ObjectShape.Circle, ObjectSize.Large);
        Assert.Throws<ArgumentException>(() => _ = new Scene(4, 2, Background.Sand, [o, o], 0));
        Assert.Throws<ArgumentException>(() => _ = new Scene(4, 2, Background.Sand, [o with { Column = 4 }], 0));
        string path = Path.Combine(Path.GetTempPath(), "vwlmm-patches-" + Guid.NewGuid().ToString("N") + ".json");
        try
        {
            File.WriteAllText(path, "{\"grid\": 2, \"patch\": 8, \"held_out\": [], \"images\": [{\"image\": \"a.png\", \"patches\": [\"sky\"]}]}");
            var e = Assert.Throws<InvalidDataException>(() => ShapesGridWriter.ReadPatchLabels(path))!;
            Assert.That(e.Message, Does.StartWith(path).And.Contain("images[0] has 1 patches, expected 4"));
            File.WriteAllText(path, "{\"grid\": \"2\"}");
            Assert.That(Assert.Throws<InvalidDataException>(() => ShapesGridWriter.ReadPatchLabels(path))!.Message, Does.StartWith(path));
            File.WriteAllText(path, "{\"grid\": 2}");
            Assert.That(Assert.Throws<InvalidDataException>(() => ShapesGridWriter.ReadPatchLabels(path))!.Message, Does.Contain("missing field \"patch\""));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void WriterWorksWithTheRealPngCodec()
    {
        string dir = Path.Combine(Path.GetTempPath(), "vwlmm-shapes-png-" + Guid.NewGuid().ToString("N"));
        try
        {
            ShapesGridWriter.Write(dir, 3, 23, ImageCodec.SavePng, options: new ShapesGridOptions { TextOnlyFraction = 0 });
            var world = new ShapesGridWorld(23);
            var data = LlavaDataset.Load(Path.Combine(dir, ShapesGridWriter.DataFile), dir);
            for (int i = 0; i < 3; i++)
                Assert.That(ImageCodec.Decode(data.ImagePath(data.Samples[i])).Pixels, Is.EqualTo(world.Sample(Split.Train, i).Image.Pixels));
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>Stands in for the PNG codec: width, height, raw pixels.</summary>
    private static class FakePng
    {
        public static void Save(RgbImage image, string path)
        {
            using var w = new BinaryWriter(File.Create(path));
            w.Write(image.Width);
            w.Write(image.Height);
            w.Write(image.Pixels);
        }

        public static RgbImage Load(string path)
        {
            using var r = new BinaryReader(File.OpenRead(path));
            int width = r.ReadInt32(), height = r.ReadInt32();
            return new RgbImage(width, height, r.ReadBytes(width * height * 3));
        }
    }

    // ---- independent readers of the world's ground truth ----

    /// <summary>Per palette colour: pixels of the cell within distance 50 of it; and the mask of all such pixels.</summary>
    private static (int[] Counts, bool[,] Mask) PaletteMatches(RgbImage image, int x0, int y0, int p)
    {
        var counts = new int[ShapesGridRenderer.Palette.Count];
        var mask = new bool[p, p];
        for (int y = 0; y < p; y++)
            for (int x = 0; x < p; x++)
            {
                var px = image.Pixel(x0 + x, y0 + y);
                for (int k = 0; k < counts.Length; k++)
                {
                    var (r, g, b) = ShapesGridRenderer.Palette[k];
                    int d2 = (px[0] - r) * (px[0] - r) + (px[1] - g) * (px[1] - g) + (px[2] - b) * (px[2] - b);
                    if (d2 >= 50 * 50) continue;
                    counts[k]++;
                    mask[y, x] = true;
                }
            }
        return (counts, mask);
    }

    /// <summary>Names a shape from its pixel mask by bounding-box geometry.</summary>
    private static string ClassifyShape(bool[,] mask, int p)
    {
        int top = p, bottom = -1, left = p, right = -1, area = 0;
        for (int y = 0; y < p; y++)
            for (int x = 0; x < p; x++)
                if (mask[y, x])
                {
                    (top, bottom, left, right) = (Math.Min(top, y), Math.Max(bottom, y), Math.Min(left, x), Math.Max(right, x));
                    area++;
                }
        int h = bottom - top + 1, w = right - left + 1;
        int RowWidth(int y) => Enumerable.Range(left, w).Count(x => mask[y, x]);
        if (area == h * w) return "square";
        int widest = Enumerable.Range(top, h).Max(RowWidth);
        if (RowWidth(bottom) == widest && RowWidth(bottom) >= RowWidth(top) + 2) return "triangle";
        return RowWidth(top + h / 4) <= 3 ? "cross" : "circle";
    }

    /// <summary>Answers a question by reading the scene's objects directly.</summary>
    /// <summary>The object in the cell "row R column C" of a question names (1-based).</summary>
    private static GridObject ObjectInCell(string question, Scene scene)
    {
        var m = Regex.Match(question, "row (\\d+) column (\\d+)");
        return scene.Objects.Single(o => o.Row == int.Parse(m.Groups[1].Value) - 1 && o.Column == int.Parse(m.Groups[2].Value) - 1);
    }

    private static string Solve(string question, Scene scene)
    {
        Match m;
        string Colour(GridObject o) => ColourNames[(int)o.Colour];
        string Shape(GridObject o) => ShapeNames[(int)o.Shape];
        if ((m = Regex.Match(question, "^what colour is the (\\w+) \\?$")).Success)
            return Colour(scene.Objects.Single(o => Shape(o) == m.Groups[1].Value));
        if ((m = Regex.Match(question, "^what shape is the (\\w+) object \\?$")).Success)
            return Shape(scene.Objects.Single(o => Colour(o) == m.Groups[1].Value));
        if ((m = Regex.Match(question, "^how many (\\w+) objects \\?$")).Success)
            return scene.Objects.Count(o => Colour(o) == m.Groups[1].Value).ToString();
        if ((m = Regex.Match(question, "^how many (\\w+) \\?$")).Success)
            return scene.Objects.Count(o => PluralNames[(int)o.Shape] == m.Groups[1].Value).ToString();
        if ((m = Regex.Match(question, "^is there a (\\w+) (\\w+) \\?$")).Success)
            return scene.Objects.Any(o => Colour(o) == m.Groups[1].Value && Shape(o) == m.Groups[2].Value) ? "yes" : "no";
        if ((m = Regex.Match(question, "^what (colour|shape) is in row \\d+ column \\d+ \\?$")).Success)
            return m.Groups[1].Value == "colour" ? Colour(ObjectInCell(question, scene)) : Shape(ObjectInCell(question, scene));
        if ((m = Regex.Match(question, "^what is in row (\\d+) column (\\d+) \\?$")).Success)
        {
            int r = int.Parse(m.Groups[1].Value) - 1, c = int.Parse(m.Groups[2].Value) - 1;
            var hit = scene.Objects.Where(o => o.Row == r && o.Column == c).ToArray();
            if (hit.Length == 1) return Colour(hit[0]) + " " + Shape(hit[0]);
            return r < scene.Horizon ? "sky" : Enum.GetName(scene.Ground)!.ToLowerInvariant();
        }
        throw new AssertionException($"unparsable question '{question}'");
    }

    /// <summary>Multiset of "colour shape" (sorted) + ground, from a caption.</summary>
    private static string ParseCaption(string caption)
    {
        var items = new List<string>();
        string ground = "";
        string[] numbers = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];
        foreach (string part in caption.Split(" , "))
        {
            string[] w = part.Split(' ');
            if (w[0] == "sky") ground = w[2];
            else if (w[0] == "a") items.Add(w[^5] + " " + w[^4]);
            else items.AddRange(Enumerable.Repeat(w[1] + " " + ShapeNames[Array.IndexOf(PluralNames, w[2])], Array.IndexOf(numbers, w[0])));
        }
        items.Sort(StringComparer.Ordinal);
        return string.Join("|", items) + "/" + ground;
    }

    private static string Describe(Scene scene)
    {
        var items = scene.Objects.Select(o => ColourNames[(int)o.Colour] + " " + ShapeNames[(int)o.Shape]).ToList();
        items.Sort(StringComparer.Ordinal);
        return string.Join("|", items) + "/" + Enum.GetName(scene.Ground)!.ToLowerInvariant();
    }

    /// <summary>A scene with the caption's objects (positions irrelevant to colour/shape/count/existence questions).</summary>
    private static Scene ParseCaptionScene(string caption)
    {
        string[] halves = ParseCaption(caption).Split('/');
        var objects = halves[0].Split('|', StringSplitOptions.RemoveEmptyEntries).Select((item, i) =>
        {
            string[] w = item.Split(' ');
            return new GridObject(0, i, (ObjectColour)Array.IndexOf(ColourNames, w[0]), (ObjectShape)Array.IndexOf(ShapeNames, w[1]), ObjectSize.Large);
        }).ToArray();
        return new Scene(8, 1, Enum.Parse<Background>(halves[1], ignoreCase: true), objects, 0);
    }
}
