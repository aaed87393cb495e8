using VwLmm.Cli.Reports;
using VwLmm.Core;
using VwLmm.Data.Images;

namespace VwLmm.Cli.Commands;

public sealed class VisualizeCommand : ICommand
{
    public string Name => "visualize";
    public string Summary => "map each image patch to its visual word (VM-head argmax), as an HTML page";
    public string Help => $$"""
        usage: vwlmm visualize --model DIR --image X [--out map.html] [--top-k K] [--weights bf16] [--device D] [--threads N]
          Labels every patch with argmax softmax(W_vm·x); hovering a cell shows its top-K words (default 5).
          {{Shared.WeightsHelp}}
          {{Shared.AllowUnusedHelp}}
        example: vwlmm visualize --model runs/demo/model --image world/images/0003.png --out map.html
        """;
    public IReadOnlyList<string> Flags => ["--allow-unused"];
    public IReadOnlyList<string> Valued => [.. Backends.Options, .. Shared.InferenceOptions, "--model", "--image", "--out", "--top-k"];

    public int Run(CliArgs args, TextWriter stdout)
    {
        string imagePath = args.Require("--image");
        string modelDir = args.Require("--model");
        string output = CliArgs.NotADirectory("--out", args.Get("--out") ?? "map.html");
        int topK = args.GetInt("--top-k", 5, 1, 100);
        // Decoded before the model loads: a wrong image path should not cost loading gigabytes of weights first.
        var image = ImageCodec.Decode(imagePath);
        var weights = Shared.Weights(args);
        using var backend = Backends.Create(args, Console.Error);
        var (model, tok) = Shared.LoadModel(backend, modelDir, args.Has("--allow-unused"), Console.Error, weights);
        using (model)
        {
            var pre = Shared.Preprocessor(model.Config);
            var pixels = pre.Process(image);
            using var arena = new Arena(backend, 256L << 20);
            var tape = new Tape(backend, arena, record: false);
            var c = model.Config.Vision;
            var px = Ops.Input(tape, pixels, 1, c.NumChannels, c.ImageSize, c.ImageSize);
            var logits = model.VisualWordLogits(tape, model.EncodeImages(tape, px)).ToArray();
            int v = model.Config.Llm.VocabSize, grid = c.ImageSize / c.PatchSize, offset = model.Vision.TokensPerImage - grid * grid;
            var cells = new List<MapCell>();
            for (int j = 0; j < grid * grid; j++)
            {
                var top = HostMath.TopSoftmax(logits.AsSpan((offset + j) * v, v), topK)
                    .Select(t => (Piece(tok.IdToPiece(t.Index)), t.P)).ToList();
                cells.Add(new MapCell(top[0].Item1, top, CellVerdict.Unknown, null));
            }
            var shown = Denormalise(pixels, c.ImageSize, pre.Options);
            new HtmlReport($"Visual words of {Path.GetFileName(imagePath)}")
                .Paragraph($"Model {modelDir}: each cell is one {c.PatchSize}×{c.PatchSize} patch of the {c.ImageSize}px model input, labelled with argmax softmax(W_vm·x). Hover for the top {topK}.")
                .Maps([new VisualWordMap(Path.GetFileName(imagePath), shown, grid, cells)], Math.Max(24, 480 / grid))
                .Save(output);
            if (!args.Has("--quiet")) Console.Error.WriteLine($"wrote {output}"); // --out may be /dev/stdout
            return 0;
        }
    }

    private static string Piece(string p) => p.Replace('▁', ' ').Trim() is { Length: > 0 } s ? s : p;

    // What the tower saw: the preprocessed tensor mapped back to 8-bit RGB.
    private static RgbImage Denormalise(float[] chw, int s, ClipPreprocessorOptions o)
    {
        var img = new RgbImage(s, s);
        for (int ch = 0; ch < 3; ch++)
            for (int i = 0; i < s * s; i++)
                img.Pixels[i * 3 + ch] = (byte)Math.Clamp(Math.Round((chw[ch * s * s + i] * o.Std[ch] + o.Mean[ch]) * 255), 0, 255);
        return img;
    }
}
