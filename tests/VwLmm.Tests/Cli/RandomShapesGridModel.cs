using VwLmm.Cpu;
using VwLmm.Data.Images;
using VwLmm.Data.ShapesGrid;
using VwLmm.Data.Text;
using VwLmm.Model;
using VwLmm.Model.Checkpoints;
using VwLmm.Model.Recipes;

namespace VwLmm.Tests.Cli;

/// <summary>
/// A randomly initialised ShapesGrid-sized model saved as a model folder (config.json, weights, tokenizer.model), for the
/// CLI tests of the verbs that read one; and a test scene to show it.
/// </summary>
internal sealed record RandomShapesGridModel(string Dir, VwLmmConfig Config, SentencePieceTokenizer Tokenizer)
{
    /// <summary>
    /// Saves to <paramref name="dir"/> the recipe's model config, changed by <paramref name="change"/>, with PyTorch's
    /// initialisation (seed 7) and the VM head from embed_tokens. The tokenizer is trained on the world, or copied from
    /// <paramref name="tokenizerFrom"/>'s folder (training one takes a while).
    /// </summary>
    public static RandomShapesGridModel Save(string dir, Func<VwLmmConfig, VwLmmConfig>? change = null, RandomShapesGridModel? tokenizerFrom = null)
    {
        Directory.CreateDirectory(dir);
        var recipe = new ShapesGridRecipe(1);
        if (tokenizerFrom is not null)
            File.Copy(Path.Combine(tokenizerFrom.Dir, ShapesGridRecipe.TokenizerFile), Path.Combine(dir, ShapesGridRecipe.TokenizerFile));
        var tok = recipe.LoadOrTrainTokenizer(dir);
        var config = recipe.ModelConfig(tok);
        if (change is not null) config = change(config);
        using var cpu = new CpuBackend(1);
        using var model = new VwLmmModel(cpu, config);
        model.InitializeRandom(7, InitScheme.Torch);
        model.ApplyVmHeadInit();
        ModelCheckpoint.Save(model, dir);
        return new RandomShapesGridModel(dir, config, tok);
    }

    /// <summary>Writes the first test image of the world (seed 1) as <paramref name="dir"/>/scene.png and returns its path.</summary>
    public static string SaveScene(string dir)
    {
        string path = Path.Combine(dir, "scene.png");
        ImageCodec.SavePng(new ShapesGridRecipe(1).World.Sample(Split.Test, 0).Image, path);
        return path;
    }
}
