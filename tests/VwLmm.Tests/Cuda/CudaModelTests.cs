using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cpu;
using VwLmm.Cuda;
using VwLmm.Data.Conversations;
using VwLmm.Model;
using VwLmm.Model.Training;
using VwLmm.Tests.Model;

namespace VwLmm.Tests.Cuda;

/// <summary>
/// The whole model on a CUDA backend against the CPU backend: every op of a training step and of cached generation runs
/// as a kernel (or through cuBLAS), so a launcher that packs an argument wrongly or an op left pending fails here even
/// when its own suite passes. Subclassed once per CUDA runtime (emulator, real driver).
/// </summary>
public abstract class CudaModelTests
{
    /// <summary>A fresh CUDA backend; called before any CPU work so that a fixture without its device is ignored at once.</summary>
    protected abstract IBackend CreateCuda();

    private const int Steps = 20;

    private static TrainConfig Recipe() => new()
    {
        Seed = 42,
        LogEvery = 1,
        MaxLength = 64,
        Stages =
        [
            new StageConfig
            {
                Name = "all", Data = "d", Steps = Steps, Lr = 5e-3, BatchSize = 3,
                Trainable = [ParameterGroup.Vision, ParameterGroup.Projector, ParameterGroup.Llm, ParameterGroup.VmHead],
            },
        ],
    };

    /// <summary>The tiny preset widened to head dim 32 (from 16 and 8), the smallest the CUDA attention kernels
    /// instantiate; GQA stays (4 query heads on 2 KV heads).</summary>
    private static VwLmmConfig Config(bool pif = false, bool reverse = false)
    {
        var c = TinyWorld.Config(pif: pif, reverse: reverse);
        return c with
        {
            Vision = c.Vision with { HiddenSize = 64, NumAttentionHeads = 2 },
            Llm = c.Llm with { HiddenSize = 128, NumAttentionHeads = 4, NumKeyValueHeads = 2 },
        };
    }

    private static List<StepMetrics> Train(IBackend backend, VwLmmConfig cfg)
    {
        var source = new TinyWorld.Source(cfg, 23);
        var steps = new List<StepMetrics>();
        using (backend)
        using (var m = TinyWorld.Model(backend, cfg, seed: 5))
        using (var t = new Trainer(m, Recipe(), _ => source, 64 << 20))
        {
            t.OnStep = steps.Add;
            t.Run(null, CancellationToken.None);
        }
        return steps;
    }

    /// <summary>
    /// Float sums run in other orders on the two backends (block reductions, OpenBLAS kernels), so the runs drift apart
    /// by rounding only: every loss term stays within 0.1 % of the CPU's over 20 AdamW steps of all four parameter
    /// groups, while training moves the loss by far more than that.
    /// </summary>
    [TestCase(false, false)]
    [TestCase(true, true)]
    public void TrainingTracksTheCpuBackend(bool pif, bool reverse)
    {
        const double percent = 0.1;
        var cfg = Config(pif, reverse);
        var device = CreateCuda();
        var cpu = Train(new CpuBackend(2), cfg);
        var cuda = Train(device, cfg);
        Assert.That(cpu, Has.Count.EqualTo(Steps));
        Assert.That(cuda, Has.Count.EqualTo(Steps));
        for (int i = 0; i < Steps; i++)
        {
            Assert.That(cuda[i].LossText, Is.EqualTo(cpu[i].LossText).Within(percent).Percent, $"step {i}: text loss");
            Assert.That(cuda[i].LossVm, Is.EqualTo(cpu[i].LossVm).Within(percent).Percent, $"step {i}: visual-word loss");
            Assert.That(cuda[i].GradNorm, Is.EqualTo(cpu[i].GradNorm).Within(percent).Percent, $"step {i}: gradient norm");
        }
        Assert.That(Math.Abs(cpu[^1].Loss - cpu[0].Loss), Is.GreaterThan(10 * percent / 100 * cpu[0].Loss), "training must move the loss");
    }

    /// <summary>With bf16 linear weights the CUDA path runs gemv_bf16 while decoding and widens for cuBLAS in the prefill.</summary>
    [TestCase(DType.F32)]
    [TestCase(DType.BF16)]
    public void GreedyGenerationPicksTheCpuTokens(DType weights)
    {
        var cfg = Config();
        int[] a = [1, 5, Llava.ImageTokenIndex, 7, 8];
        int[] b = [1, 9, 10, 11, Llava.ImageTokenIndex, 12, 13, 14, 15];
        var pixels = TinyWorld.Pixels(1, cfg, 1).Concat(TinyWorld.Pixels(1, cfg, 2)).ToArray();
        int[][] Generate(IBackend backend)
        {
            using var be = backend;
            using var m = TinyWorld.Model(be, cfg, seed: 3, scale: 6, weights);
            using var gen = new Generator(m);
            return gen.Generate([new(a, new int[a.Length]), new(b, new int[b.Length])], pixels, new SamplingOptions { MaxNewTokens = 8 });
        }
        var device = CreateCuda();
        var cpu = Generate(new CpuBackend(2));
        var cuda = Generate(device);
        Assert.That(cuda, Is.EqualTo(cpu));
        Assert.That(cpu[0].Distinct().Count(), Is.GreaterThan(1), "degenerate model: pick another seed or scale");
    }

    /// <summary>
    /// From the second decode step on, decoding records the step and replays it (a CUDA graph on a GPU): the tokens of
    /// running every step's ops, samples of different lengths and sampling included. Five samples with bf16 weights
    /// take the widening path of the linear layers (more than gemv_bf16's four rows), whose buffer the eager step grows.
    /// </summary>
    [TestCase(2, DType.F32)]
    [TestCase(5, DType.BF16)]
    public void RecordedDecodingPicksTheTokensOfEagerDecoding(int samples, DType weights)
    {
        var cfg = Config();
        int[][] ids = [[1, 5, Llava.ImageTokenIndex, 7, 8], [1, 9, 10, 11, Llava.ImageTokenIndex, 12, 13, 14, 15]];
        var prompts = Enumerable.Range(0, samples).Select(i => ids[i % 2][..(ids[i % 2].Length - i / 2)])
                                .Select(p => new TokenizedConversation(p, new int[p.Length])).ToArray();
        var pixels = Enumerable.Range(0, samples).SelectMany(i => TinyWorld.Pixels(1, cfg, i + 1)).ToArray();
        var options = new SamplingOptions { MaxNewTokens = 10, Temperature = 0.8f, TopK = 20, Seed = 7 };
        (int[][] Tokens, long Replays) Generate(bool graphs)
        {
            using var be = (CudaBackend)CreateCuda();
            using var m = TinyWorld.Model(be, cfg, seed: 3, scale: 6, weights);
            using var gen = new Generator(m) { UseGraphs = graphs };
            var tokens = gen.Generate(prompts, pixels, options);
            return (tokens, be.GraphReplays);
        }
        var eager = Generate(false);
        var recorded = Generate(true);
        Assert.That(recorded.Tokens, Is.EqualTo(eager.Tokens));
        Assert.That(eager.Replays, Is.Zero);
        Assert.That(recorded.Replays, Is.EqualTo(options.MaxNewTokens - 2), "one eager step, then a replay for every later step");
        Assert.That(eager.Tokens[0].Distinct().Count(), Is.GreaterThan(1), "degenerate model: pick another seed or scale");
    }

    /// <summary>A chat's turns on the device: kept rows, a cache grown by device copies, the CPU's tokens.</summary>
    [Test]
    public void ConversationTurnsPickTheCpuTokens()
    {
        var cfg = Config();
        var pixels = TinyWorld.Pixels(1, cfg, 1);
        (int[] Tokens, int Reused)[] Turns(IBackend backend)
        {
            using var be = backend;
            using var m = TinyWorld.Model(be, cfg, seed: 3, scale: 6);
            using var gen = new Generator(m);
            var opts = new SamplingOptions { MaxNewTokens = 6 };
            int[] prompt = [1, 5, Llava.ImageTokenIndex, 7, 8];
            var turns = new List<(int[], int)>();
            for (int turn = 0; turn < 3; turn++)
            {
                var answer = gen.Continue(new(prompt, new int[prompt.Length]), pixels, opts);
                turns.Add((answer, gen.ReusedPositions));
                prompt = [.. prompt, .. answer, 9 + turn, 10 + turn];
            }
            return turns.ToArray();
        }
        var device = CreateCuda();
        var cpu = Turns(new CpuBackend(2));
        var cuda = Turns(device);
        Assert.That(cuda, Is.EqualTo(cpu));
        Assert.That(cpu.Skip(1).Select(t => t.Reused), Is.All.GreaterThan(0), "later turns keep the earlier rows");
    }
}
