using System.Text.Json;
using VwLmm.Data.Images;
using VwLmm.Data.ShapesGrid;
using VwLmm.Model.Recipes;

// Asks a demo model about objects alone in the image, and beside one distractor, to tell a wrong lookup (the answer
// read from another object) from a wrong readout (the right object, misnamed) (docs/RESULTS.md, session 42):
//   dotnet run --project scripts/LoneObjects -c Release -- SEED OUT_DIR PER_PAIR
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
if (args.Length != 3 || !ulong.TryParse(args[0], out ulong seed) || !int.TryParse(args[2], out int perPair) || perPair < 1)
{
    Console.Error.WriteLine("usage: LoneObjects SEED OUT_DIR PER_PAIR");
    return 2;
}
string outDir = args[1];
var world = new ShapesGridRecipe(seed).World;
int grid = world.Options.Grid;
var rng = new Random(unchecked((int)seed * 7919 + 13));
Directory.CreateDirectory(Path.Combine(outDir, "images"));
var samples = new List<object>();
int images = 0;

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
    File.WriteAllBytes(Path.Combine(outDir, "images", file), ImageCodec.EncodePng(world.Render(scene)));
    string colour = Words.Of(subject.Colour), shape = Words.Of(subject.Shape), other = distractor?.ToString() ?? "-";
    void Ask(string g, string kind, string asked, string question, string answer) => samples.Add(new
    {
        id = $"{g}|{kind}|{subject}|{other}|{asked}|{images}",
        image = file,
        conversations = new[] { new { from = "human", value = "<image>\n" + question }, new { from = "gpt", value = answer } },
    });
    Ask(group, "shape", colour, $"what shape is the {colour} object ?", shape);
    Ask(group, "colour", shape, $"what colour is the {shape} ?", colour);
    if (group == "lone-heldout")
        foreach (var c in world.TrainCombos.Where(t => t.Shape == subject.Shape && t.Colour != subject.Colour).Select(t => Words.Of(t.Colour)))
            Ask("lone-misnamed", "shape", c, $"what shape is the {c} object ?", shape);
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
return 0;
