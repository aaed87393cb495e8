using VwLmm.Data.Images;
using VwLmm.Data.ShapesGrid;
using VwLmm.Model.Recipes;

namespace VwLmm.Cli.Commands;

public sealed class DataShapesGridCommand : ICommand
{
    public string Name => "data shapesgrid";
    public string Summary => "write N ShapesGrid samples: PNGs, LLaVA JSON (QA and captions), per-patch labels";
    public string Help => """
        usage: vwlmm data shapesgrid --out DIR [--n N] [--seed S] [--split train|test]
          Writes DIR/images/NNNN.png, DIR/data.json (LLaVA format), DIR/captions.json and DIR/patch_labels.json.
          The world is the one `vwlmm demo --seed S` and the shapesgrid train configs use (32×32 images, a 4×4 grid of
          8-pixel cells, the seed's held-out colour×shape pairs), so the test split of seed S is the held-out split a
          demo of seed S is evaluated on.
          --n N        samples, 1 to 10000000 (default 100)
          --seed S     the world's seed (default 1)
          --split      train (default) or test
        example: vwlmm data shapesgrid --out world --n 100 --seed 1 --split test
        """;
    public IReadOnlyList<string> Flags => [];
    public IReadOnlyList<string> Valued => ["--out", "--n", "--seed", "--split"];

    public int Run(CliArgs args, TextWriter stdout)
    {
        string dir = CliArgs.NotAFile("--out", args.Require("--out"));
        int n = args.GetInt("--n", 100, 1, 10_000_000);
        ulong seed = (ulong)args.GetInt("--seed", 1, 0);
        var split = args.Get("--split") switch
        {
            null or "train" => Split.Train,
            "test" => Split.Test,
            var s => throw new UsageException($"--split must be train or test, not '{s}'"),
        };
        ShapesGridWriter.Write(CliArgs.CreateDirectory("--out", dir), n, seed, ImageCodec.SavePng, split, ShapesGridRecipe.DefaultOptions);
        if (!args.Has("--quiet")) stdout.WriteLine($"wrote {n} {split.ToString().ToLowerInvariant()} samples to {dir}");
        return 0;
    }
}
