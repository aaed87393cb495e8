using BenchmarkDotNet.Attributes;
using VwLmm.Core;
using VwLmm.Cpu;
using VwLmm.Data.Batching;
using VwLmm.Data.Conversations;
using VwLmm.Model;

namespace VwLmm.Bench;

/// <summary>
/// The second turn of a chat about a LLaVA-sized image (bench-5m with 24×24 = 576 patches, random weights): its prompt
/// repeats the first turn's (36 text ids, the image, 20 ids) and answer (24 ids) and adds a 16-id question, 672
/// positions in all. With KeepCache, Continue prefills what the cache lacks (the 17 positions after the kept prefix, no
/// vision tower); without, the whole prompt. Each call chooses one token.
/// </summary>
public class ChatTurnBench
{
    [Params(false, true)]
    public bool KeepCache { get; set; }

    private CpuBackend _backend = null!;
    private VwLmmModel _model = null!;
    private Generator _generator = null!;
    private TokenizedConversation _first = null!, _second = null!, _unrelated = null!;
    private float[] _pixels = [];
    private static readonly SamplingOptions Answer = new() { MaxNewTokens = 24 }, OneToken = new() { MaxNewTokens = 1 };

    [GlobalSetup]
    public void Setup()
    {
        var preset = VwLmmConfig.Presets.Get("bench-5m");
        var config = preset with
        {
            Vision = preset.Vision with { ImageSize = 24 * preset.Vision.PatchSize },
            Llm = preset.Llm with { MaxPositionEmbeddings = 1024 },
        };
        _backend = new CpuBackend(2);
        _model = new VwLmmModel(_backend, config, DType.F32);
        _model.InitializeRandom(1);
        var rng = new Random(2);
        int[] Ids(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(3, config.Llm.VocabSize)).ToArray();
        int[] first = [1, .. Ids(35), Llava.ImageTokenIndex, .. Ids(20)];
        _pixels = Enumerable.Range(0, 3 * config.Vision.ImageSize * config.Vision.ImageSize).Select(_ => (float)rng.NextDouble()).ToArray();
        _generator = new Generator(_model);
        _first = new TokenizedConversation(first, new int[first.Length]);
        int[] second = [.. first, .. _generator.Continue(_first, _pixels, Answer), .. Ids(16)];
        _second = new TokenizedConversation(second, new int[second.Length]);
        int[] unrelated = [2, .. second[1..]];
        _unrelated = new TokenizedConversation(unrelated, new int[unrelated.Length]);
    }

    /// <summary>
    /// Back to the cache after the first turn, or to one as large that shares nothing with the second turn's prompt
    /// (it differs in the first id), so that both cases prefill into memory already mapped.
    /// </summary>
    [IterationSetup]
    public void FirstTurn()
    {
        if (KeepCache) _generator.Continue(_first, _pixels, Answer);
        else _generator.Continue(_unrelated, _pixels, OneToken);
    }

    [Benchmark]
    public int SecondTurn() => _generator.Continue(_second, _pixels, OneToken)[0];

    [GlobalCleanup]
    public void Cleanup()
    {
        _generator.Dispose();
        _model.Dispose();
        _backend.Dispose();
    }
}
