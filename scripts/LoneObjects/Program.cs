using System.Text.Json;
using VwLmm.Data.Images;
using VwLmm.Data.ShapesGrid;
using VwLmm.Core;
using VwLmm.Cpu;
using VwLmm.Data.Batching;
using VwLmm.Data.Conversations;
using VwLmm.Data.Text;
using VwLmm.Model;
using VwLmm.Model.Checkpoints;
using VwLmm.Model.Recipes;

// Asks a demo model about objects alone in the image, and beside one distractor, to tell a wrong lookup (the answer
// read from another object) from a wrong readout (the right object, misnamed) (docs/RESULTS.md, session 42):
//   dotnet run --project scripts/LoneObjects -c Release -- SEED OUT_DIR PER_PAIR [MODEL_DIR]
// writes OUT_DIR/images/*.png and OUT_DIR/data.json (LLaVA format, one question per sample) for the world of
// `vwlmm demo --seed SEED`. Each id is GROUP|KIND|SUBJECT|DISTRACTOR|ASKED|N: pairs as "colour shape", "-" for no
// distractor, ASKED the word the question names the object by. The groups:
//   lone-heldout   each held-out pair alone, PER_PAIR images per pair
//   duo-heldout    the same beside one training-pair distractor that shares neither its colour nor its shape
//   lone-train, duo-train  as many images of randomly drawn training pairs
// Each image gets the demo's two questions about its subject ("what shape is the C object ?", "what colour is the S
// ?"); the distractor never makes either ambiguous. Each lone held-out image also gets, as group lone-misnamed, the
// shape question with every other colour word that was seen with the subject's shape in training: the one object
// is still the only one to read, so an answer that changes with the word shows the question, not the image,
// choosing among shapes. Then:
//   vwlmm eval --model RUN/model --data OUT_DIR/data.json --images OUT_DIR/images --out OUT_DIR/predictions.jsonl
//   scripts/lone_objects.py OUT_DIR/predictions.jsonl
// With MODEL_DIR (a demo model of the same seed), it also prints where that model looks (docs/RESULTS.md, session
// 43): the shape question of every image (not the misnamed ones) runs through the model once, and the decoder's
// attention weights (LlamaDecoder.AttentionProbe) from the prompt's tokens after the image give, per group, first
// answer token (right, the distractor's shape, another word) and layer: the mean weight on the image; the head and
// token that weigh the asked-about object's patch most, with that weight and the distractor patch's; and the weights
// on the two patches at the asked colour's word and at the last token, mean over heads.
if (args.Length is not (3 or 4) || !ulong.TryParse(args[0], out ulong seed) || !int.TryParse(args[2], out int perPair) || perPair < 1)
{
    Console.Error.WriteLine("usage: LoneObjects SEED OUT_DIR PER_PAIR [MODEL_DIR]");
    return 2;
}
string outDir = args[1];
var world = new ShapesGridRecipe(seed).World;
int grid = world.Options.Grid;
var rng = new Random(unchecked((int)seed * 7919 + 13));
Directory.CreateDirectory(Path.Combine(outDir, "images"));
var samples = new List<object>();
// Per image, what WhereTheModelLooks asks about it: the subject's and the distractor's cell (−1: none).
var shapeQuestions = new List<(string Group, RgbImage Image, string Colour, string Answer, int Subject, int Distractor, string? DistractorShape)>();
int images = 0;

static string ShapeQuestion(string colour) => $"what shape is the {colour} object ?";

Combo DistractorFor(Combo subject)
{
    var others = world.TrainCombos.Where(t => t.Colour != subject.Colour && t.Shape != subject.Shape).ToArray();
    return others[rng.Next(others.Length)];
}

void Add(string group, Combo subject, Combo? distractor)
{
    var cells = Enumerable.Range(0, grid * grid).OrderBy(_ => rng.Next()).ToArray();
    var objects = new List<GridObject> { new(cells[0] / grid, cells[0] % grid, subject.Colour, subject.Shape, ObjectSize.Large) };
    if (distractor is { } d) objects.Add(new(cells[1] / grid, cells[1] % grid, d.Colour, d.Shape, ObjectSize.Large));
    objects.Sort((a, b) => (a.Row * grid + a.Column).CompareTo(b.Row * grid + b.Column));
    var scene = new Scene(grid, rng.Next(1, grid - 1), ShapesGridWorld.Grounds[rng.Next(ShapesGridWorld.Grounds.Count)], objects, (ulong)rng.NextInt64());
    string file = $"{images:D5}.png";
    var image = world.Render(scene);
    File.WriteAllBytes(Path.Combine(outDir, "images", file), ImageCodec.EncodePng(image));
    string colour = Words.Of(subject.Colour), shape = Words.Of(subject.Shape), other = distractor?.ToString() ?? "-";
    void Ask(string g, string kind, string asked, string question, string answer) => samples.Add(new
    {
        id = $"{g}|{kind}|{subject}|{other}|{asked}|{images}",
        image = file,
        conversations = new[] { new { from = "human", value = "<image>\n" + question }, new { from = "gpt", value = answer } },
    });
    Ask(group, "shape", colour, ShapeQuestion(colour), shape);
    shapeQuestions.Add((group, image, colour, shape, cells[0], distractor is null ? -1 : cells[1], distractor is { } ds ? Words.Of(ds.Shape) : null));
    Ask(group, "colour", shape, $"what colour is the {shape} ?", colour);
    if (group == "lone-heldout")
        foreach (var c in world.TrainCombos.Where(t => t.Shape == subject.Shape && t.Colour != subject.Colour).Select(t => Words.Of(t.Colour)))
            Ask("lone-misnamed", "shape", c, ShapeQuestion(c), shape);
    images++;
}

foreach (var pair in world.HeldOut)
    for (int i = 0; i < perPair; i++)
    {
        Add("lone-heldout", pair, null);
        Add("duo-heldout", pair, DistractorFor(pair));
    }
for (int i = 0; i < perPair * world.HeldOut.Count; i++)
{
    var pair = world.TrainCombos[rng.Next(world.TrainCombos.Count)];
    Add("lone-train", pair, null);
    Add("duo-train", pair, DistractorFor(pair));
}
File.WriteAllText(Path.Combine(outDir, "data.json"), JsonSerializer.Serialize(samples));
Console.WriteLine($"{images} images, {samples.Count} questions in {outDir}; held-out pairs: {string.Join(", ", world.HeldOut)}");
if (args.Length == 4) WhereTheModelLooks(args[3]);
return 0;

void WhereTheModelLooks(string modelDir)
{
    var recipe = new ShapesGridRecipe(seed);
    var tok = SentencePieceTokenizer.Load(Path.Combine(modelDir, ShapesGridRecipe.TokenizerFile));
    using var backend = new CpuBackend(Environment.ProcessorCount);
    using var model = ModelCheckpoint.Load(backend, modelDir);
    var c = model.Config.Llm;
    int n = model.Vision.TokensPerImage;
    var builder = new BatchBuilder(n, c.MaxPositionEmbeddings, c.VocabSize);
    using var arena = new Arena(backend, 64L << 20);
    // Per group and outcome: questions, and per layer the mean weight over heads and question tokens on all image
    // positions; per (layer, head, question token) the summed weight on the subject's and on the distractor's patch;
    // per layer the mean over heads of those two at the asked colour's word (by the knockouts of docs/RESULTS.md,
    // session 43, where version 7 reads the image; its first piece) and at the prompt's last token, whose logits give
    // the answer.
    // Tokens are named by their piece, the asked colour's as COLOUR, so that questions of every colour line up.
    var counts = new SortedDictionary<string, int>(StringComparer.Ordinal);
    var image = new Dictionary<(string, int), double>();
    var onSubject = new Dictionary<(string, int, int, string), double>();
    var onDistractor = new Dictionary<(string, int, int, string), double>();
    var atToken = new Dictionary<(string, int, int), double>();
    foreach (var q in shapeQuestions)
    {
        var prompt = ShapesGridRecipe.Template.EncodePrompt([new Turn(Speaker.Human, Llava.ImagePlaceholder + "\n" + ShapeQuestion(q.Colour))], hasImage: true, tok);
        var batch = builder.Build([prompt]);
        int first = Array.IndexOf(batch.ImageMask, (byte)1), l = batch.L, after = first + n;
        var weights = new List<float[]>();
        model.Decoder.AttentionProbe = (_, qs, ks) => weights.Add(LlamaDecoder.AttentionProbabilities(qs.ToArray(), ks.ToArray(), l, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim));
        arena.Reset();
        var tape = new Tape(backend, arena, record: false);
        var px = Ops.Input(tape, recipe.Pixels(q.Image), 1, model.Config.Vision.NumChannels, model.Config.Vision.ImageSize, model.Config.Vision.ImageSize);
        var logits = model.Forward(tape, batch, px).Logits.ToArray();
        model.Decoder.AttentionProbe = null;
        var last = logits.AsSpan((l - 1) * c.VocabSize, c.VocabSize);
        int answer = 0;
        for (int v = 1; v < last.Length; v++) if (last[v] > last[answer]) answer = v;
        string outcome = answer == tok.Encode(q.Answer, addBos: false)[0] ? "right"
            : q.DistractorShape is { } ds && answer == tok.Encode(ds, addBos: false)[0] ? "the distractor's shape" : "another word";
        string key = $"{q.Group}: {outcome}";
        counts[key] = counts.GetValueOrDefault(key) + 1;
        int[] colourIds = tok.Encode(q.Colour, addBos: false);
        int colourAt = Enumerable.Range(after, l - after - colourIds.Length + 1)
            .FirstOrDefault(i => batch.Map.AsSpan(i, colourIds.Length).SequenceEqual(colourIds), -1);
        if (colourAt < 0) throw new InvalidOperationException($"'{ShapeQuestion(q.Colour)}': the colour word's pieces are not a run of the prompt's");
        for (int layer = 0; layer < weights.Count; layer++)
        for (int h = 0; h < c.NumAttentionHeads; h++)
        for (int t = after; t < l; t++)
        {
            string token = t >= colourAt && t < colourAt + colourIds.Length ? "COLOUR" : tok.IdToPiece(batch.Map[t]);
            var row = weights[layer].AsSpan((h * l + t) * l, l);
            double all = 0;
            for (int j = first; j < after; j++) all += row[j];
            image[(key, layer)] = image.GetValueOrDefault((key, layer)) + all / (c.NumAttentionHeads * (l - after));
            int at = t == l - 1 ? 2 : t == colourAt ? 0 : -1;
            if (at >= 0)
            {
                atToken[(key, layer, at)] = atToken.GetValueOrDefault((key, layer, at)) + row[first + q.Subject] / c.NumAttentionHeads;
                if (q.Distractor >= 0) atToken[(key, layer, at + 1)] = atToken.GetValueOrDefault((key, layer, at + 1)) + row[first + q.Distractor] / c.NumAttentionHeads;
            }
            onSubject[(key, layer, h, token)] = onSubject.GetValueOrDefault((key, layer, h, token)) + row[first + q.Subject];
            if (q.Distractor >= 0) onDistractor[(key, layer, h, token)] = onDistractor.GetValueOrDefault((key, layer, h, token)) + row[first + q.Distractor];
        }
    }
    Console.WriteLine($"where {modelDir} looks from the shape question's tokens (uniform over the image: {1.0 / n:0.000} per patch)");
    Console.WriteLine("| group: first answer token | questions | " + string.Join(" | ", Enumerable.Range(0, c.NumHiddenLayers).Select(i => $"layer {i}: image; subject / distractor at the head and token most on the subject; at the colour word; at the last token")) + " |");
    Console.WriteLine("|---|---:|" + string.Concat(Enumerable.Repeat("---|", c.NumHiddenLayers)));
    foreach (var (key, count) in counts)
    {
        string Layer(int layer)
        {
            var best = onSubject.Where(e => e.Key.Item1 == key && e.Key.Item2 == layer).MaxBy(e => e.Value).Key;
            string distractor = onDistractor.TryGetValue(best, out double d) ? $"{d / count:0.00}" : "–";
            string At(int at) => $"{atToken[(key, layer, at)] / count:0.00} / " + (atToken.TryGetValue((key, layer, at + 1), out double ad) ? $"{ad / count:0.00}" : "–");
            return $"{image[(key, layer)] / count:0.00}; {onSubject[best] / count:0.00} / {distractor} (head {best.Item3}, '{best.Item4}'); {At(0)}; {At(2)}";
        }
        Console.WriteLine($"| {key} | {count} | " + string.Join(" | ", Enumerable.Range(0, c.NumHiddenLayers).Select(Layer)) + " |");
    }
}
