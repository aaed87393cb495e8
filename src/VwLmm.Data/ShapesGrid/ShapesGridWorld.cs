using VwLmm.Core;
using VwLmm.Data.Conversations;
using VwLmm.Data.Images;

namespace VwLmm.Data.ShapesGrid;

/// <summary>Size and mix of a <see cref="ShapesGridWorld"/>.</summary>
public sealed record ShapesGridOptions
{
    public int ImageSize { get; init; } = 64;
    public int PatchSize { get; init; } = 8;
    public int MinObjects { get; init; } = 1;
    public int MaxObjects { get; init; } = 4;
    /// <summary>Colour×shape combinations (of 24) that appear only in test images; 5 ≈ 20 %.</summary>
    public int HeldOutCombos { get; init; } = 5;
    /// <summary>Draw small and large objects (and say which in captions); otherwise all are large.</summary>
    public bool VarySize { get; init; }
    /// <summary>Share of instruction samples that are text-only (exercises the empty-mask path).</summary>
    public double TextOnlyFraction { get; init; } = 0.05;
    /// <summary>Question-answer rounds per instruction sample: 1 … MaxQuestions.</summary>
    public int MaxQuestions { get; init; } = 3;
    public int Grid => ImageSize / PatchSize;
}

/// <summary>One generated image sample with all its text and ground truth.</summary>
public sealed record ShapesGridSample(Split Split, long Index, Scene Scene, RgbImage Image, string Caption,
                                      IReadOnlyList<QaPair> Questions)
{
    public string Id => IdOf(Split, Index);

    /// <summary>The id of sample <paramref name="index"/> of a split ("train-12").</summary>
    public static string IdOf(Split split, long index) => $"{split.ToString().ToLowerInvariant()}-{index}";

    /// <summary>Stage-1 caption sample for the plain template; <paramref name="imageRef"/> is the image's dataset path.</summary>
    public ConversationSample CaptionConversation(string imageRef) =>
        new(Id, imageRef, [new Turn(Speaker.Human, Llava.ImagePlaceholder), new Turn(Speaker.Gpt, Caption)]);

    /// <summary>Stage-2 multi-turn question-answer sample, the image placeholder opening the first question.</summary>
    public ConversationSample QaConversation(string imageRef) =>
        new(Id, imageRef, ShapesGridWorld.QaTurns(Llava.ImagePlaceholder + "\n", Questions));
}

/// <summary>
/// A counterfactual twin of a training conversation (<see cref="ShapesGridWorld.Twin"/>): <paramref name="Conversation"/>
/// asks one question about <paramref name="Scene"/>, whose answer is that of the original's question number
/// <paramref name="Question"/> (0-based).
/// </summary>
public sealed record ShapesGridTwin(ConversationSample Conversation, Scene Scene, int Question);

/// <summary>
/// The ShapesGrid world (METHOD §7.1): a deterministic, seeded generator of Grid×Grid board images, their per-patch
/// ground truth and text. Every sample is a pure function of (seed, options, split, index).
/// <para>
/// Caption grammar: objects grouped by colour+shape in reading order of first appearance; a single one reads
/// "a [size] COLOUR SHAPE at VPOS HPOS" (3×3 regions: top/middle/bottom × left/centre/right), a group of n reads
/// "NUMBER COLOUR SHAPES"; then "sky above GROUND"; parts joined by " , ".
/// Questions: "what colour is the SHAPE ?" (only for a shape present once) → colour; "what shape is the COLOUR object ?"
/// (colour present once) → shape — in training images only where every other object's attribute also comes with the
/// asked one (<see cref="Ask"/>); "how many SHAPES ?" / "how many COLOUR objects ?" → digits; "is there a COLOUR SHAPE ?"
/// → yes / no; "what is in row R column C ?" (1-based) → "COLOUR SHAPE" or the background word.
/// </para>
/// <para>
/// Held-out split: <see cref="HeldOut"/> combinations never occur in train images or in any train text; every test
/// image holds at least one of them.
/// </para>
/// </summary>
public sealed class ShapesGridWorld
{
    /// <summary>Bumped whenever the same seed would generate different data, so caches of older worlds are not reused.</summary>
    public const int Version = 2;

    private const ulong SceneStream = 1, TextOnlyChoiceStream = 2, TextOnlyStream = 3, PretrainStream = 4, HeldOutStream = 5;
    /// <summary>The backgrounds below the horizon (sky is above it).</summary>
    public static IReadOnlyList<Background> Grounds { get; } = [Background.Grass, Background.Water, Background.Sand];
    private static readonly QuestionKind[] AllKinds = Enum.GetValues<QuestionKind>();
    private static readonly QuestionKind[] TextKinds = AllKinds.Where(k => k != QuestionKind.Position).ToArray();

    /// <summary>All 24 colour×shape combinations.</summary>
    public static IReadOnlyList<Combo> AllCombos { get; } =
        Enum.GetValues<ObjectColour>().SelectMany(c => Enum.GetValues<ObjectShape>().Select(s => new Combo(c, s))).ToArray();

    private readonly HashSet<Combo> _heldOut;

    public ShapesGridWorld(ulong seed, ShapesGridOptions? options = null)
    {
        Seed = seed;
        Options = options ?? new ShapesGridOptions();
        Validate(Options);
        HeldOut = ChooseHeldOut(seed, Options.HeldOutCombos);
        _heldOut = HeldOut.ToHashSet();
        TrainCombos = AllCombos.Where(c => !_heldOut.Contains(c)).ToArray();
        Vocabulary = BuildVocabulary(Options);
    }

    public ulong Seed { get; }
    public ShapesGridOptions Options { get; }
    public IReadOnlyList<Combo> HeldOut { get; }
    public IReadOnlyList<Combo> TrainCombos { get; }
    /// <summary>Every word the world's text (and the shapes_chat template) can contain, sorted ordinally.</summary>
    public IReadOnlyList<string> Vocabulary { get; }

    public bool IsHeldOut(Combo combo) => _heldOut.Contains(combo);

    /// <summary>The scene of image sample <paramref name="index"/> of <paramref name="split"/>.</summary>
    public Scene SceneAt(Split split, long index) => GenerateScene(Streams.Derive(Seed, SceneStream, (ulong)split, (ulong)index), split);

    /// <summary>Scene → image [ImageSize×ImageSize].</summary>
    public RgbImage Render(Scene scene) => ShapesGridRenderer.Render(scene, Options.ImageSize, Options.PatchSize);

    /// <summary>Image sample <paramref name="index"/> of a split: scene, image [ImageSize×ImageSize], caption, 1 … MaxQuestions QA pairs.</summary>
    public ShapesGridSample Sample(Split split, long index)
    {
        var scene = SceneAt(split, index);
        return new ShapesGridSample(split, index, scene, Render(scene), Caption(scene), Questions(scene, split, AllKinds));
    }

    /// <summary>Image samples <paramref name="start"/>, start + 1, … of a split, without end.</summary>
    public IEnumerable<ShapesGridSample> Stream(Split split, long start = 0)
    {
        for (long i = start; ; i++) yield return Sample(split, i);
    }

    /// <summary>Whether instruction sample <paramref name="index"/> is text-only (see <see cref="InstructionConversation"/>);
    /// never in the test split, the demo's evaluation set of images, where a text-only sample's caption would state a
    /// held-out pair and answer its own question.</summary>
    public bool IsTextOnly(Split split, long index) =>
        split == Split.Train && Streams.Derive(Seed, TextOnlyChoiceStream, (ulong)split, (ulong)index).NextDouble() < Options.TextOnlyFraction;

    /// <summary>
    /// Stage-2 sample <paramref name="index"/>: the image QA conversation of <see cref="Sample"/> (image at
    /// <paramref name="imageRef"/>), or for a <see cref="IsTextOnly"/> index a text-only one.
    /// </summary>
    public ConversationSample InstructionConversation(Split split, long index, string imageRef) =>
        IsTextOnly(split, index) ? TextOnlyConversation(split, index) : QaConversation(split, index, imageRef, AllKinds);

    /// <summary>
    /// Image sample <paramref name="index"/> asked only questions of the given kinds (the questions of any kind when its
    /// scene allows none of them — when every colour and every shape in it repeats); with <paramref name="cellQuestions"/>
    /// then <see cref="CellQuestions"/>' two. Built from the scene alone: the image is not rendered.
    /// </summary>
    public ConversationSample QaConversation(Split split, long index, string imageRef, IReadOnlyCollection<QuestionKind> kinds,
                                             bool cellQuestions = false)
    {
        var scene = SceneAt(split, index);
        var questions = QaQuestions(scene, split, kinds);
        if (cellQuestions) questions = [.. questions, .. CellQuestions(scene, questions)];
        return new(ShapesGridSample.IdOf(split, index), imageRef, QaTurns(Llava.ImagePlaceholder + "\n", questions));
    }

    /// <summary>
    /// "what shape is in row R column C ?" and "what colour is in row R column C ?", in random order: each names its object
    /// by its cell, so neither has the other attribute's word to answer from. They ask about two objects that
    /// <paramref name="asked"/> does not, where the scene has them (else any). A shape question that names its object by
    /// colour is otherwise answered through a readout keyed on that colour word, learned on that colour's training
    /// shapes only (docs/RESULTS.md, session 42); these questions make the decoder read the attribute itself. Asked
    /// beside the other questions rather than instead of half of them, they keep most of their lookup; a shape question
    /// alone costs the colour questions theirs (session 44).
    /// </summary>
    public static IReadOnlyList<QaPair> CellQuestions(Scene scene, IReadOnlyList<QaPair> asked)
    {
        var rng = Streams.Derive(scene.Seed, Scene.CellQuestionStream);
        var all = scene.Objects.ToArray();
        var fresh = all.Where(o => asked.All(q => q.Subject != o)).ToArray();
        var s = rng.Pick(fresh.Length > 0 ? fresh : all);
        var rest = fresh.Where(o => o != s).ToArray();
        var c = rng.Pick(rest.Length > 0 ? rest : all);
        QaPair shape = new(QuestionKind.Shape, $"what shape is in {Words.Cell(s.Row, s.Column)} ?", Words.Of(s.Shape), false, s),
               colour = new(QuestionKind.Colour, $"what colour is in {Words.Cell(c.Row, c.Column)} ?", Words.Of(c.Colour), false, c);
        return rng.NextInt(2) == 0 ? [shape, colour] : [colour, shape];
    }

    private IReadOnlyList<QaPair> QaQuestions(Scene scene, Split split, IReadOnlyCollection<QuestionKind> kinds)
    {
        var questions = Questions(scene, split, [.. kinds]);
        return questions.Count > 0 ? questions : Questions(scene, split, AllKinds);
    }

    /// <summary>
    /// The counterfactual twin of training image conversation <paramref name="index"/> (<see cref="QaConversation"/> with
    /// the same kinds): its first shape question whose subject can take another colour — one no other object in the
    /// scene has, that makes a training pair with the subject's shape, and beside which no other object makes a held-out
    /// pair (<see cref="Ask"/>'s rule) — asked alone about the scene with the subject so recoloured. "what shape is the
    /// blue object ?" about a blue circle becomes "what shape is the red object ?" about the same circle in red: the same
    /// answer, so a model that answers from the subject's shape alone answers both alike, and one that leans on the colour
    /// (blue circles and squares only, never blue crosses) does not. Colour questions get no twin: twins of them (the
    /// subject's shape changed) cost held-out colour answers (docs/RESULTS.md, session 39). Null when no question allows
    /// a change. Built from the scene alone: nothing is rendered.
    /// </summary>
    public ShapesGridTwin? Twin(long index, string imageRef, IReadOnlyCollection<QuestionKind> kinds)
    {
        var scene = SceneAt(Split.Train, index);
        var questions = QaQuestions(scene, Split.Train, kinds);
        var rng = Streams.Derive(scene.Seed, Scene.TwinStream);
        for (int k = 0; k < questions.Count; k++)
        {
            if (questions[k].Kind != QuestionKind.Shape || questions[k].Subject is not { } o) continue;
            var options = Enum.GetValues<ObjectColour>().Select(c => o with { Colour = c })
                .Where(t => t != o && !IsHeldOut(t.Combo))
                .Select(t => (Subject: t, Objects: scene.Objects.Select(p => p == o ? t : p).ToArray()))
                .Where(t => MayAskShapeOf(t.Objects, t.Subject, Split.Train))
                .ToArray();
            if (options.Length == 0) continue;
            var (twin, objects) = rng.Pick(options);
            var changed = new Scene(scene.Grid, scene.Horizon, scene.Ground, objects, scene.Seed);
            var id = $"{ShapesGridSample.IdOf(Split.Train, index)}-twin";
            return new ShapesGridTwin(new ConversationSample(id, imageRef, QaTurns(Llava.ImagePlaceholder + "\n", [ShapeQuestion(twin)])), changed, k);
        }
        return null;
    }

    /// <summary>A text-only QA conversation: the first question is preceded by a caption of an unseen scene that answers it.</summary>
    public ConversationSample TextOnlyConversation(Split split, long index)
    {
        var scene = GenerateScene(Streams.Derive(Seed, TextOnlyStream, (ulong)split, (ulong)index), split);
        var id = $"{split.ToString().ToLowerInvariant()}-text-{index}";
        return new ConversationSample(id, null, QaTurns(Caption(scene) + " . ", Questions(scene, split, TextKinds)));
    }

    /// <summary>A paragraph of statements about a random train-split scene, for text-only LM pretraining.</summary>
    public string PretrainingText(long index)
    {
        var rng = Streams.Derive(Seed, PretrainStream, (ulong)index);
        var scene = GenerateScene(rng, Split.Train);
        var sentences = new List<string> { Caption(scene) + " ." };
        foreach (var o in scene.Objects)
            sentences.Add(rng.NextInt(2) == 0
                ? $"{Words.Cell(o.Row, o.Column)} is a {o.Combo} ."
                : $"the {o.Combo} is at {Words.Region(o.Row, o.Column, scene.Grid)} .");
        foreach (var group in scene.Objects.GroupBy(o => o.Shape).Where(g => g.Count() > 1))
            sentences.Add($"there are {Words.Number(group.Count())} {Words.Plural(group.Key)} .");
        var absent = TrainCombos.Where(c => !scene.Objects.Any(o => o.Combo == c)).ToArray();
        if (absent.Length > 0) sentences.Add($"there is no {rng.Pick(absent)} .");
        foreach (var qa in Questions(scene, Split.Train, AllKinds)) sentences.Add($"{qa.Question} {qa.Answer} .");
        return string.Join(" ", sentences);
    }

    /// <summary>
    /// Text for tokenizer training: the vocabulary, the template role tags, then for each of <paramref name="documents"/>
    /// indices a pretraining paragraph, a train caption and its questions and answers. Train split only.
    /// </summary>
    public IEnumerable<string> TokenizerCorpus(int documents)
    {
        yield return string.Join(" ", Vocabulary);
        for (int i = 0; i < documents; i++)
        {
            yield return PretrainingText(i);
            var sample = Sample(Split.Train, i);
            yield return sample.Caption;
            foreach (var qa in sample.Questions) yield return $"USER: {qa.Question} ASSISTANT: {qa.Answer}";
        }
    }

    /// <summary>The caption of a scene (grammar in the class summary).</summary>
    public string Caption(Scene scene)
    {
        var parts = new List<string>();
        foreach (var group in scene.Objects.GroupBy(o => o.Combo))
        {
            var first = group.First();
            int n = group.Count();
            string size = Options.VarySize ? Words.Of(first.Size) + " " : "";
            parts.Add(n == 1
                ? $"a {size}{first.Combo} at {Words.Region(first.Row, first.Column, scene.Grid)}"
                : $"{Words.Number(n)} {Words.Of(first.Colour)} {Words.Plural(first.Shape)}");
        }
        parts.Add($"sky above {Words.Of(scene.Ground)}");
        return string.Join(" , ", parts);
    }

    internal static IReadOnlyList<Turn> QaTurns(string firstPrefix, IReadOnlyList<QaPair> questions)
    {
        var turns = new List<Turn>();
        for (int i = 0; i < questions.Count; i++)
        {
            turns.Add(new Turn(Speaker.Human, (i == 0 ? firstPrefix : "") + questions[i].Question));
            turns.Add(new Turn(Speaker.Gpt, questions[i].Answer));
        }
        return turns;
    }

    private Scene GenerateScene(Rng rng, Split split)
    {
        int grid = Options.Grid;
        int horizon = rng.Next(1, grid - 1);
        var ground = rng.Pick(Grounds);
        int count = rng.Next(Options.MinObjects, Options.MaxObjects);
        var cells = Enumerable.Range(0, grid * grid).ToArray();
        var allowed = split == Split.Train ? TrainCombos : AllCombos;
        var objects = new GridObject[count];
        for (int i = 0; i < count; i++)
        {
            int j = i + rng.NextInt(cells.Length - i);
            (cells[i], cells[j]) = (cells[j], cells[i]);
            var combo = split == Split.Test && i == 0 && HeldOut.Count > 0 ? rng.Pick(HeldOut) : rng.Pick(allowed);
            var size = Options.VarySize && rng.NextInt(2) == 0 ? ObjectSize.Small : ObjectSize.Large;
            objects[i] = new GridObject(cells[i] / grid, cells[i] % grid, combo.Colour, combo.Shape, size);
        }
        Array.Sort(objects, (a, b) => (a.Row * grid + a.Column).CompareTo(b.Row * grid + b.Column));
        return new Scene(grid, horizon, ground, objects, rng.NextUInt64());
    }

    /// <summary>1 … MaxQuestions distinct questions about the scene, drawn from its own stream.</summary>
    private IReadOnlyList<QaPair> Questions(Scene scene, Split split, QuestionKind[] kinds)
    {
        var rng = Streams.Derive(scene.Seed, Scene.QuestionStream);
        int want = rng.Next(1, Options.MaxQuestions);
        var result = new List<QaPair>();
        var asked = new HashSet<string>();
        // Count and existence questions always exist, so this ends; the cap only bounds retries on duplicates.
        for (int attempt = 0; result.Count < want && attempt < 50 * want; attempt++)
            if (Ask(rng.Pick(kinds), scene, split, rng) is { } qa && asked.Add(qa.Question)) result.Add(qa);
        return result;
    }

    /// <remarks>
    /// A training colour question about the triangle is asked only when no other object has a colour triangles never
    /// come in during training (and a shape question likewise). Otherwise a blue distractor beside "what colour is the
    /// triangle ?" teaches that a blue object is never the triangle, a shortcut that fails on the held-out blue triangle;
    /// and the answer prior the recipe trains against, which knows that triangles are never blue, would pick the
    /// answer without the decoder finding the triangle. Measured in docs/RESULTS.md (session 9).
    /// </remarks>
    private QaPair? Ask(QuestionKind kind, Scene scene, Split split, Rng rng)
    {
        var objects = scene.Objects;
        switch (kind)
        {
            case QuestionKind.Colour:
            {
                var unique = objects.Where(o => objects.Count(p => p.Shape == o.Shape) == 1)
                    .Where(o => split == Split.Test || objects.All(p => p == o || !IsHeldOut(new Combo(p.Colour, o.Shape)))).ToArray();
                if (unique.Length == 0) return null;
                return ColourQuestion(rng.Pick(unique));
            }
            case QuestionKind.Shape:
            {
                var unique = objects.Where(o => MayAskShapeOf(objects, o, split)).ToArray();
                if (unique.Length == 0) return null;
                return ShapeQuestion(rng.Pick(unique));
            }
            case QuestionKind.Count:
                if (rng.NextInt(2) == 0)
                {
                    var shape = rng.Pick(Enum.GetValues<ObjectShape>());
                    var counted = objects.Where(o => o.Shape == shape).ToArray();
                    return new QaPair(kind, $"how many {Words.Plural(shape)} ?", Digits(counted.Length), counted.Any(o => IsHeldOut(o.Combo)));
                }
                else
                {
                    var colour = rng.Pick(Enum.GetValues<ObjectColour>());
                    var counted = objects.Where(o => o.Colour == colour).ToArray();
                    return new QaPair(kind, $"how many {Words.Of(colour)} objects ?", Digits(counted.Length), counted.Any(o => IsHeldOut(o.Combo)));
                }
            case QuestionKind.Existence:
            {
                var allowed = split == Split.Train ? TrainCombos : AllCombos;
                var absent = allowed.Where(c => !objects.Any(o => o.Combo == c)).ToArray();
                bool present = rng.NextInt(2) == 0 || absent.Length == 0;
                var combo = present ? rng.Pick(objects).Combo : rng.Pick(absent);
                return new QaPair(kind, $"is there a {combo} ?", present ? "yes" : "no", IsHeldOut(combo));
            }
            default:
            {
                int row, column;
                if (rng.NextInt(2) == 0)
                {
                    var o = rng.Pick(objects);
                    (row, column) = (o.Row, o.Column);
                }
                else
                    (row, column) = (rng.NextInt(scene.Grid), rng.NextInt(scene.Grid));
                bool heldOut = scene.ObjectAt(row, column) is { } hit && IsHeldOut(hit.Combo);
                return new QaPair(kind, $"what is in {Words.Cell(row, column)} ?", scene.CellWords(row, column), heldOut);
            }
        }
    }

    /// <summary>Whether a shape question may ask about o among objects: its colour is unique, and in training no other
    /// object's shape makes a held-out pair with it (<see cref="Ask"/>'s remarks).</summary>
    private bool MayAskShapeOf(IReadOnlyList<GridObject> objects, GridObject o, Split split) =>
        objects.Count(p => p.Colour == o.Colour) == 1 &&
        (split == Split.Test || objects.All(p => p == o || !IsHeldOut(new Combo(o.Colour, p.Shape))));

    private QaPair ColourQuestion(GridObject o) =>
        new(QuestionKind.Colour, $"what colour is the {Words.Of(o.Shape)} ?", Words.Of(o.Colour), IsHeldOut(o.Combo), o);

    private QaPair ShapeQuestion(GridObject o) =>
        new(QuestionKind.Shape, $"what shape is the {Words.Of(o.Colour)} object ?", Words.Of(o.Shape), IsHeldOut(o.Combo), o);

    private static string Digits(int n) => n.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static IReadOnlyList<Combo> ChooseHeldOut(ulong seed, int count)
    {
        // Keep ≥ 2 train shapes per colour and ≥ 2 train colours per shape, so every word stays grounded in training.
        var rng = Streams.Derive(seed, HeldOutStream);
        var order = AllCombos.ToArray();
        for (int i = order.Length - 1; i > 0; i--)
        {
            int j = rng.NextInt(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        var chosen = new List<Combo>();
        foreach (var c in order)
        {
            if (chosen.Count == count) break;
            if (chosen.Count(h => h.Colour == c.Colour) + 1 > Enum.GetValues<ObjectShape>().Length - 2) continue;
            if (chosen.Count(h => h.Shape == c.Shape) + 1 > Enum.GetValues<ObjectColour>().Length - 2) continue;
            chosen.Add(c);
        }
        if (chosen.Count < count)
            throw new ArgumentException($"cannot hold out {count} combinations and keep every colour and shape in training");
        return chosen.OrderBy(c => c.Colour).ThenBy(c => c.Shape).ToArray();
    }

    private static void Validate(ShapesGridOptions o)
    {
        if (o.PatchSize < 6) throw new ArgumentException($"PatchSize {o.PatchSize} is too small to draw shapes (min 6)");
        if (o.ImageSize % o.PatchSize != 0) throw new ArgumentException($"ImageSize {o.ImageSize} is not a multiple of PatchSize {o.PatchSize}");
        if (o.Grid < 3) throw new ArgumentException($"grid {o.Grid} is below 3 cells per side (needed for top/middle/bottom)");
        if (o.MinObjects < 1 || o.MaxObjects < o.MinObjects || o.MaxObjects > Math.Min(o.Grid * o.Grid, Words.MaxNumberWord))
            throw new ArgumentException($"objects per image {o.MinObjects}…{o.MaxObjects} must satisfy 1 ≤ min ≤ max ≤ min(cells, {Words.MaxNumberWord})");
        if (o.HeldOutCombos < 0 || o.HeldOutCombos >= AllCombos.Count) throw new ArgumentException($"HeldOutCombos {o.HeldOutCombos} out of [0, {AllCombos.Count})");
        if (o.TextOnlyFraction is < 0 or > 1) throw new ArgumentException($"TextOnlyFraction {o.TextOnlyFraction} out of [0, 1]");
        if (o.MaxQuestions < 1) throw new ArgumentException($"MaxQuestions {o.MaxQuestions} must be ≥ 1");
    }

    private static IReadOnlyList<string> BuildVocabulary(ShapesGridOptions o)
    {
        var words = new SortedSet<string>(StringComparer.Ordinal)
        {
            "a", "at", "sky", "above", ",", ".", "?", "what", "colour", "is", "the", "shape", "object", "objects", "how", "many",
            "there", "are", "no", "yes", "in", "row", "column", "top", "middle", "bottom", "left", "centre", "right",
            "USER:", "ASSISTANT:",
        };
        foreach (var c in Enum.GetValues<ObjectColour>()) words.Add(Words.Of(c));
        foreach (var s in Enum.GetValues<ObjectShape>())
        {
            words.Add(Words.Of(s));
            words.Add(Words.Plural(s));
        }
        foreach (var b in Enum.GetValues<Background>()) words.Add(Words.Of(b));
        if (o.VarySize)
            foreach (var s in Enum.GetValues<ObjectSize>()) words.Add(Words.Of(s));
        for (int n = 2; n <= o.MaxObjects; n++) words.Add(Words.Number(n));
        for (int n = 0; n <= Math.Max(o.Grid, o.MaxObjects); n++) words.Add(Digits(n));
        return words.ToArray();
    }
}
