using VwLmm.Core;
using VwLmm.Data.Conversations;
using VwLmm.Model;
using VwLmm.Model.Training;
using VwLmm.Model.Recipes;
using VwLmm.Data.Text;

namespace VwLmm.Tests.Model;

/// <summary>Tiny models and batches for model-level tests: random but seeded, every code path, milliseconds per step.</summary>
internal static class TinyWorld
{
    public static VwLmmConfig Config(bool pif = false, bool detach = false, bool reverse = false, double lambda = 1) =>
        VwLmmConfig.Presets.Tiny with
        {
            UsePif = pif,
            VmDetachTarget = detach,
            VmKlDirection = reverse ? KlDirection.Reverse : KlDirection.Forward,
            VmLossWeight = lambda,
        };

    /// <summary>A randomly initialised model, every weight times <paramref name="scale"/>; linear weights stored as <paramref name="weights"/>.</summary>
    public static VwLmmModel Model(IBackend backend, VwLmmConfig config, ulong seed = 7, double scale = 1, DType weights = DType.F32)
    {
        var m = new VwLmmModel(backend, config, weights);
        m.InitializeRandom(seed);
        if (scale != 1)
            foreach (var p in m.Parameters.All)
            {
                var a = p.Value.ToArray();
                for (int i = 0; i < a.Length; i++) a[i] *= (float)scale;
                p.SetValues(a);
            }
        return m;
    }

    /// <summary>ids with −200 at the image, labels = ids on the answer part.</summary>
    public static TokenizedConversation Sample(int[] ids, int answerFrom)
    {
        var labels = new int[ids.Length];
        for (int i = 0; i < ids.Length; i++) labels[i] = i >= answerFrom && ids[i] >= 0 ? ids[i] : Llava.IgnoreIndex;
        return new TokenizedConversation(ids, labels);
    }

    public static float[] Pixels(int images, VwLmmConfig c, int seed)
    {
        var rng = new Random(seed);
        var px = new float[images * c.Vision.NumChannels * c.Vision.ImageSize * c.Vision.ImageSize];
        for (int i = 0; i < px.Length; i++) px[i] = (float)(rng.NextDouble() * 4 - 2);
        return px;
    }

    /// <summary>A deterministic source: example i has an image unless i % 5 == 4, and a random answer.</summary>
    public sealed class Source(VwLmmConfig c, int count) : ITrainingSource
    {
        public int Count => count;

        public TrainingExample Get(int index)
        {
            var r = new Random(1000 + index);
            int v = c.Llm.VocabSize;
            bool image = index % 5 != 4;
            var ids = new List<int> { 1, 3 + r.Next(v - 3) };
            if (image) ids.Add(Llava.ImageTokenIndex);
            int prompt = ids.Count;
            for (int i = 0; i < 3 + index % 3; i++) ids.Add(3 + r.Next(v - 3));
            ids.Add(2);
            return new TrainingExample(TinyWorld.Sample(ids.ToArray(), prompt), image ? Pixels(1, c, index) : null);
        }
    }

    /// <summary>
    /// ShapesGrid's seed-1 recipe with its tokenizer, trained once per test run (a few seconds) in a temporary folder
    /// that is gone again once the tokenizer is loaded.
    /// </summary>
    public static (ShapesGridRecipe Recipe, ITokenizer Tokenizer) ShapesGridSeed1 => s_shapesGrid.Value;

    private static readonly Lazy<(ShapesGridRecipe, ITokenizer)> s_shapesGrid = new(() =>
    {
        var recipe = new ShapesGridRecipe(1);
        string dir = Directory.CreateTempSubdirectory("vwlmm-shapesgrid-").FullName;
        try
        {
            return (recipe, recipe.LoadOrTrainTokenizer(dir));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    });
}
