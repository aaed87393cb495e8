using System.Text.Json;
using VwLmm.Core;
using VwLmm.Cpu;
using VwLmm.Data.Conversations;
using VwLmm.Data.ShapesGrid;
using VwLmm.Model;
using VwLmm.Model.Checkpoints;
using VwLmm.Model.Recipes;

// Exports what the demo's instruction stage trains on, for scripts/pipeline_toy.py (docs/RESULTS.md, session 11):
//   tokens   SEED CACHE_DIR OUT.jsonl TRAIN TEST  the recipe's colour/shape conversations of train images 0..TRAIN-1
//            (with their two cell questions, as recipe version 8 trains: "qa:colour,shape+cells") and
//            one conversation per colour/shape question of test images 0..TEST-1, token ids as the trainer sees them
//            (the tokenizer from CACHE_DIR/tokenizer.model), with each image's per-patch ground truth.
//   features SEED CHECKPOINT OUT.f32 TRAIN TEST  the frozen tower's patch features [TRAIN + TEST, N, C] of the same
//            images (train first), raw little-endian float32.
//   codes    SEED CACHE_DIR OUT.u8 TRAIN TEST  repeats the demo's vision pretraining (deterministic: the same tower and
//            probes as `vwlmm demo --seed SEED`) and writes each patch's probe argmax (colour, shape, background)
//            [TRAIN + TEST, N, 3] as bytes: what a projector fed the probes' decisions would see.
if (args.Length != 6 || args[0] is not ("tokens" or "features" or "codes"))
{
    Console.Error.WriteLine("usage: ShapesGridDump tokens|features|codes SEED CACHE_DIR|CHECKPOINT OUT TRAIN_IMAGES TEST_IMAGES");
    return 2;
}
var recipe = new ShapesGridRecipe(ulong.Parse(args[1]));
int train = int.Parse(args[4]), test = int.Parse(args[5]);
var images = Enumerable.Range(0, train).Select(i => recipe.World.Sample(Split.Train, i))
    .Concat(Enumerable.Range(0, test).Select(i => recipe.World.Sample(Split.Test, i)));
if (args[0] == "tokens") WriteTokens(recipe, args[2], args[3], images);
else if (args[0] == "codes") WriteCodes(recipe, ulong.Parse(args[1]), args[2], args[3], train, test);
else WriteFeatures(recipe, args[2], args[3], images);
return 0;

static void WriteTokens(ShapesGridRecipe recipe, string cacheDir, string outPath, IEnumerable<ShapesGridSample> images)
{
    var tok = recipe.LoadOrTrainTokenizer(cacheDir);
    var world = recipe.World;
    QuestionKind[] kinds = [QuestionKind.Colour, QuestionKind.Shape];
    using var w = new StreamWriter(outPath);
    w.WriteLine(JsonSerializer.Serialize(new
    {
        pieces = Enumerable.Range(0, tok.VocabSize).Select(tok.IdToPiece),
        held_out = world.HeldOut.Select(h => new[] { (int)h.Colour, (int)h.Shape }),
    }));
    foreach (var s in images)
    {
        var conversations = s.Split == Split.Train
            ? [world.QaConversation(s.Split, s.Index, "image", kinds, cellQuestions: true).Turns]
            : s.Questions.Where(q => q.Kind is QuestionKind.Colour or QuestionKind.Shape)
                .Select(q => (IReadOnlyList<Turn>)[new(Speaker.Human, Llava.ImagePlaceholder + "\n" + q.Question), new(Speaker.Gpt, q.Answer)]);
        var questions = s.Split == Split.Train ? null : s.Questions.Where(q => q.Kind is QuestionKind.Colour or QuestionKind.Shape).ToArray();
        int k = 0;
        foreach (var turns in conversations)
        {
            var e = ShapesGridRecipe.Template.Encode(turns, hasImage: true, tok);
            w.WriteLine(JsonSerializer.Serialize(new
            {
                split = s.Split == Split.Train ? "train" : "test",
                image = s.Index,
                kind = questions?[k].Kind.ToString().ToLowerInvariant(),
                held_out = questions?[k].InvolvesHeldOut,
                ids = e.InputIds,
                labels = e.Labels,
                // Per patch (row-major): colour (6 = none), shape (4 = none), background, as the vision probes label them.
                patches = Enumerable.Range(0, s.Scene.Grid * s.Scene.Grid).Select(j =>
                {
                    var o = s.Scene.ObjectAt(j / s.Scene.Grid, j % s.Scene.Grid);
                    return new[] { o is { } a ? (int)a.Colour : 6, o is { } b ? (int)b.Shape : 4, (int)s.Scene.BackgroundAt(j / s.Scene.Grid) };
                }),
            }));
            k++;
        }
    }
}

static void WriteFeatures(ShapesGridRecipe recipe, string checkpoint, string outPath, IEnumerable<ShapesGridSample> images)
{
    using var backend = new CpuBackend(Environment.ProcessorCount);
    using var model = ModelCheckpoint.Load(backend, checkpoint);
    var c = model.Config.Vision;
    using var arena = new Arena(backend, 256L << 20);
    using var fs = File.Create(outPath);
    foreach (var chunk in images.Chunk(64))
    {
        arena.Reset();
        var tape = new Tape(backend, arena, record: false);
        var px = chunk.SelectMany(s => recipe.Pixels(s.Image)).ToArray();
        var x = model.Vision.Forward(tape, Ops.Input(tape, px, chunk.Length, c.NumChannels, c.ImageSize, c.ImageSize)).ToArray();
        fs.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(x.AsSpan()));
    }
}

static void WriteCodes(ShapesGridRecipe recipe, ulong seed, string cacheDir, string outPath, int train, int test)
{
    var tok = recipe.LoadOrTrainTokenizer(cacheDir);
    using var backend = new CpuBackend(Environment.ProcessorCount);
    using var model = new VwLmmModel(backend, recipe.ModelConfig(tok));
    model.InitializeRandom(seed, ShapesGridRecipe.Init(ShapesGridStages.Lookup));
    using var pretraining = recipe.TrainVision(model, ShapesGridBudget.Default, seed);
    using var fs = File.Create(outPath);
    fs.Write(pretraining.Codes(Split.Train, 0, train));
    fs.Write(pretraining.Codes(Split.Test, 0, test));
}
