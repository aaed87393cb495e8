using VwLmm.Data;
using VwLmm.Data.Images;

namespace VwLmm.Cli.Commands;

public sealed class PreprocessCommand : ICommand
{
    public string Name => "preprocess";
    public string Summary => "CLIP-preprocess an image (LLaVA pad, PIL bicubic, crop, normalise) into a .npy";
    public string Help => """
        usage: vwlmm preprocess --image X [--size S] [--pad] --out X.npy
          Writes the float32 [3,S,S] tensor the vision tower receives.
          --image X    PNG or JPEG
          --size S     output side, 1 to 8192 (default 336: CLIP-L/336's)
          --pad        LLaVA's pad-to-square with the CLIP mean colour before resizing
        example: vwlmm preprocess --image cat.jpg --size 336 --pad --out cat.npy
        """;
    public IReadOnlyList<string> Flags => ["--pad"];
    public IReadOnlyList<string> Valued => ["--image", "--size", "--out"];

    public int Run(CliArgs args, TextWriter stdout)
    {
        int size = args.GetInt("--size", 336, 1, 8192);
        string output = CliArgs.NotADirectory("--out", args.Require("--out"));
        var image = ImageCodec.Decode(args.Require("--image"));
        var pixels = new ClipPreprocessor(new ClipPreprocessorOptions { Size = size, Pad = args.Has("--pad") }).Process(image);
        Npy.Write(output, pixels, [3, size, size]);
        // On stderr, as eval's: --out may be /dev/stdout, whose reader wants the .npy alone.
        if (!args.Has("--quiet")) Console.Error.WriteLine($"wrote {output} [3,{size},{size}]");
        return 0;
    }
}
