using System.Text.Json;
using NUnit.Framework;
using VwLmm.Cli;

namespace VwLmm.Tests.Cli;

/// <summary>`vwlmm bench` in process on a small shape: the JSON report is complete and self-consistent, bad options exit 2.</summary>
public class BenchCommandTests
{
    // bench-5m with a 4×4 patch grid (32 px images), batch 1, 8 text tokens. The decode rate is a difference of two
    // generation times, so it takes medians of 3 and 192 tokens (≈ 20× a prefill) to stay clear of the prefill's noise
    // on a loaded machine: with 64, a clean-clone run of the suite once saw the difference vanish.
    private static readonly string[] Small =
        ["bench", "--preset", "bench-5m", "--repeats", "3", "--warmup", "0", "--batch", "1", "--image-tokens", "16", "--text-tokens", "8", "--decode-tokens", "192"];

    private static (int code, string stdout, string stderr) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    private static JsonElement RunJson(params string[] extra)
    {
        var (code, stdout, stderr) = Run([.. Small, "--json", .. extra]);
        Assert.That(code, Is.Zero, stderr);
        return JsonDocument.Parse(stdout).RootElement.Clone();
    }

    /// <summary>The GEMM switch is read when a CPU backend is made: an unknown value is one line and exit 1, before any work.</summary>
    [Test]
    public void UnknownCpuGemmChoiceIsOneLine()
    {
        Environment.SetEnvironmentVariable(Backends.CpuGemmVariable, "mkl");
        try
        {
            var (code, stdout, stderr) = Run([.. Small, "--json"]);
            Assert.That(code, Is.EqualTo(1));
            Assert.That(stdout, Is.Empty);
            Assert.That(stderr.Trim(), Is.EqualTo("vwlmm bench: VWLMM_CPU_GEMM='mkl': expected auto, openblas or avx512"));
        }
        finally
        {
            Environment.SetEnvironmentVariable(Backends.CpuGemmVariable, null);
        }
    }

    [Test]
    public void JsonReportHasEveryMetricPositiveAndConsistent()
    {
        var r = RunJson();
        foreach (var key in new[] { "train_step_ms", "forward_ms", "prefill_ms", "decode_tokens_per_s", "gflops", "percent_of_peak",
                                    "peak_rss_mb", "model_memory_mb", "activation_mb", "train_gflop_per_step" })
        {
            double x = r.GetProperty(key).GetDouble();
            Assert.That(double.IsFinite(x) && x > 0, $"{key} = {x}");
        }
        Assert.That(r.GetProperty("allocs_per_step").GetDouble(), Is.GreaterThanOrEqualTo(0));
        Assert.That(r.GetProperty("tape_ops").GetInt32(), Is.Positive);

        // Parameters of bench-5m with 17 vision positions, counted by hand: tower (3 of 4 blocks run at select layer -2),
        // projector, LLaMA (embeddings, 4 layers, final norm, LM head), VM head.
        long c = 128, f = 512, d = 256, ff = 768, v = 2048;
        long block = 2 * c + 4 * (c * c + c) + 2 * c + (f * c + f) + (c * f + c);
        long tower = c + c * 3 * 8 * 8 + 17 * c + 2 * c + 3 * block;
        long projector = d * c + d + d * d + d;
        long llama = v * d + 4 * (4 * d * d + 3 * d * ff + 2 * d) + d + v * d;
        Assert.That(r.GetProperty("params").GetInt64(), Is.EqualTo(tower + projector + llama + v * d));

        // FLOPs of the step, by hand: every product (M rows × N outputs × K inputs) at 2MNK forward, 4MNK backward
        // (patch embedding: 2MNK, no input gradient); attention 4·T²·C (vision, T = 17) and 2·T(T+1)·d (causal, T = 24).
        double linear = 0;
        void Mm(double m, double n, double k) => linear += 2 * m * n * k;
        for (int i = 0; i < 3; i++)
        {
            for (int j = 0; j < 4; j++) Mm(17, c, c);
            Mm(17, f, c);
            Mm(17, c, f);
        }
        Mm(16, d, c);
        Mm(16, d, d);
        Mm(16, v, d);
        for (int i = 0; i < 4; i++)
        {
            for (int j = 0; j < 4; j++) Mm(24, d, d);
            for (int j = 0; j < 3; j++) Mm(24, j == 2 ? d : ff, j == 2 ? ff : d);
        }
        Mm(24, v, d);
        double patch = 2.0 * 16 * c * 3 * 64;
        double attention = 3 * 4.0 * 17 * 17 * c + 4 * 2.0 * 24 * 25 * d;
        double train = 3 * linear + 2 * patch + 3 * attention;
        Assert.That(r.GetProperty("train_gflop_per_step").GetDouble(), Is.EqualTo(train / 1e9).Within(1e-9));

        double gflops = r.GetProperty("gflops").GetDouble();
        Assert.That(gflops, Is.EqualTo(train / (r.GetProperty("train_step_ms").GetDouble() * 1e6)).Within(1e-9 * gflops));
        // The peak is this machine's measured FMA rate on the bench's 2 threads: at least 2 × 8 lanes × 2 FLOP per ns,
        // the median of one measurement before each timed step, so within the range of those.
        double peak = r.GetProperty("peak_gflops").GetDouble();
        Assert.That(peak, Is.GreaterThan(32));
        var range = r.GetProperty("peak_gflops_range").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.That(range, Has.Length.EqualTo(2));
        Assert.That(range[0], Is.LessThanOrEqualTo(peak).And.GreaterThan(32), "the lowest peak measured beside a step");
        Assert.That(range[1], Is.GreaterThanOrEqualTo(peak), "the highest");
        Assert.That(r.GetProperty("percent_of_peak").GetDouble(), Is.EqualTo(100 * gflops / peak).Within(1e-9 * gflops));
        Assert.That(r.GetProperty("cpu_gemm").GetString(), Is.EqualTo(Cpu.PackedSgemm.IsSupported ? "avx512" : "openblas"));
        Assert.That(r.GetProperty("peak_rss_mb").GetDouble(), Is.GreaterThan(4 * r.GetProperty("params").GetInt64() * 4 / 1048576.0));

        // A decoded token's bytes, by hand: 4 layers of weights (4 d² + 3 d·ff) and two norms, the final norm, the LM
        // head, one embedding row, all F32; and the KV cache: 4 layers × K and V × 4 heads × 64 floats per position,
        // over the prompt's 16 + 8 positions and (192 + 1) / 2 more on average.
        AssertDecodeBytes(r, 4 * (4 * (4 * d * d + 3 * d * ff) + 4 * 2 * d + d + v * d + d));
    }

    /// <summary>
    /// decode_bytes_per_token is <paramref name="weightBytes"/> plus the KV cache read on average (see the callers);
    /// decode_gb_per_s is those bytes at the decode rate; percent_of_bandwidth their share of the measured bandwidth.
    /// </summary>
    private static void AssertDecodeBytes(JsonElement r, long weightBytes)
    {
        double cache = 2.0 * 4 * 4 * 64 * 4 * (16 + 8 + (192 + 1) / 2.0);
        double bytes = r.GetProperty("decode_bytes_per_token").GetInt64();
        Assert.That(bytes, Is.EqualTo(weightBytes + cache));
        double rate = bytes * r.GetProperty("decode_tokens_per_s").GetDouble() / 1e9;
        Assert.That(r.GetProperty("decode_gb_per_s").GetDouble(), Is.EqualTo(rate).Within(1e-9 * rate));
        // Read by 2 threads: above 1 GB/s on any machine this runs on.
        double memory = r.GetProperty("memory_gb_per_s").GetDouble();
        Assert.That(memory, Is.GreaterThan(1));
        Assert.That(r.GetProperty("percent_of_bandwidth").GetDouble(), Is.EqualTo(100 * rate / memory).Within(1e-9 * rate));
    }

    [Test]
    public void OpsProfileCoversTheStep()
    {
        var r = RunJson("--ops");
        var ops = r.GetProperty("ops").EnumerateArray().ToList();
        var gemm = ops.Single(o => o.GetProperty("op").GetString() == "Gemm");
        // Forward: 3 vision blocks × 4 + 2 projector + VM head + 4 layers × 4 + LM head = 32 (q/k/v and gate/up are
        // stacks, one batched GEMM each). Backward: dx and dW of each linear, and of each stack dx per member and one
        // batched dW: 3 × 10 + 4 + 2 + 4 × 11 + 2 = 82.
        Assert.That(gemm.GetProperty("calls_per_step").GetDouble(), Is.EqualTo(114));
        Assert.That(gemm.GetProperty("gflops").GetDouble(), Is.Positive);
        Assert.That(ops.Any(o => o.GetProperty("op").GetString() == "AdamW"));
        Assert.That(ops.Sum(o => o.GetProperty("percent_of_step").GetDouble()), Is.EqualTo(100).Within(1e-6));

        // The same GEMMs by shape: every call in one row, and their shapes' flops are what StepFlops counts for the linears.
        var shapes = r.GetProperty("gemm_shapes").EnumerateArray().ToList();
        Assert.That(shapes.Sum(o => o.GetProperty("calls_per_step").GetDouble()), Is.EqualTo(114));
        Assert.That(shapes.Select(o => o.GetProperty("op").GetString()), Is.Unique.And.All.Match(@"^[NT][NT] \d+×\d+×\d+( ×[23])?$"));
        double Flop(JsonElement o) => o.GetProperty("gflops").GetDouble() * o.GetProperty("ms_per_step").GetDouble() * 1e6;
        Assert.That(shapes.Sum(Flop), Is.EqualTo(Flop(gemm)).Within(1e-6 * Flop(gemm)));
        Assert.That(shapes.Sum(o => o.GetProperty("ms_per_step").GetDouble()), Is.EqualTo(gemm.GetProperty("ms_per_step").GetDouble()).Within(5).Percent);

        // The batch-1 forward is the train step's 32 forward GEMMs, no backward; its rows add up to the pass.
        var forward = r.GetProperty("forward_ops").EnumerateArray().ToList();
        Assert.That(forward.Single(o => o.GetProperty("op").GetString() == "Gemm").GetProperty("calls_per_step").GetDouble(), Is.EqualTo(32));
        Assert.That(forward.Any(o => o.GetProperty("op").GetString() is "AdamW" or "AttentionBackward"), Is.False);
        Assert.That(forward.Sum(o => o.GetProperty("percent_of_step").GetDouble()), Is.EqualTo(100).Within(1e-6));
        Assert.That(r.GetProperty("forward_gemm_shapes").EnumerateArray().Sum(o => o.GetProperty("calls_per_step").GetDouble()), Is.EqualTo(32));

        // A decoded token's GEMMs are matrix-vector products over every LLM weight matrix once, in 4 layers × 4 calls
        // (stacks batched) + LM head; the GB/s of each row times its time gives back the bytes of its weight matrices.
        var decode = r.GetProperty("decode_gemm_shapes").EnumerateArray().ToList();
        Assert.That(decode.Sum(o => o.GetProperty("calls_per_step").GetDouble()), Is.EqualTo(17).Within(1e-9));
        Assert.That(decode.Select(o => o.GetProperty("op").GetString()),
                    Is.EquivalentTo(new[] { "NT 1×256×256 ×3", "NT 1×256×256", "NT 1×768×256 ×2", "NT 1×256×768", "NT 1×2048×256" }));
        double weightBytes = 4.0 * (4 * (4 * 256 * 256 + 3 * 768 * 256) + 2048 * 256);
        double Bytes(JsonElement o) => o.GetProperty("weight_gb_per_s").GetDouble() * o.GetProperty("ms_per_step").GetDouble() * 1e6;
        Assert.That(decode.Sum(Bytes), Is.EqualTo(weightBytes).Within(1e-6 * weightBytes));
        // The decode steps are timed and counted alone: no row is a difference that noise can make negative.
        var decodeOps = r.GetProperty("decode_ops").EnumerateArray().ToList();
        Assert.That(decodeOps.Select(o => o.GetProperty("ms_per_step").GetDouble()), Is.All.GreaterThanOrEqualTo(0));
    }

    /// <summary>
    /// --weights bf16 measures inference only: no train step (null, not a number made up), the decode profile's GB/s
    /// counting 2 bytes per weight, and the weights' memory: the linear layers at 2 bytes, the rest (embeddings, norms,
    /// biases, the patch convolution) at 4, counted by hand for bench-5m with a 4×4 grid.
    /// </summary>
    [Test]
    public void Bf16WeightsReportInferenceOnly()
    {
        var r = RunJson("--weights", "bf16", "--ops");
        Assert.That(r.GetProperty("weights").GetString(), Is.EqualTo("bf16"));
        foreach (var key in new[] { "train_step_ms", "gflops", "percent_of_peak", "allocs_per_step", "activation_mb" })
            Assert.That(r.GetProperty(key).ValueKind, Is.EqualTo(JsonValueKind.Null), key);
        Assert.That(r.TryGetProperty("ops", out _), Is.False, "no train-step profile");
        foreach (var key in new[] { "forward_ms", "prefill_ms", "decode_tokens_per_s" })
            Assert.That(r.GetProperty(key).GetDouble(), Is.Positive, key);

        long c = 128, f = 512, d = 256, ff = 768, v = 2048;
        long linear = 3 * (4 * c * c + 2 * f * c) + (d * c + d * d) + 4 * (4 * d * d + 3 * d * ff) + 2 * v * d;
        long rest = 3 * (9 * c + f) + c + c * 3 * 8 * 8 + 17 * c + 2 * c + 2 * d + v * d + 4 * 2 * d + d;
        Assert.That(r.GetProperty("params").GetInt64(), Is.EqualTo(linear + rest));
        Assert.That(r.GetProperty("model_memory_mb").GetDouble(), Is.EqualTo((2.0 * linear + 4.0 * rest) / 1048576).Within(1e-9));

        var decode = r.GetProperty("decode_gemm_shapes").EnumerateArray().ToList();
        double weightBytes = 2.0 * (4 * (4 * 256 * 256 + 3 * 768 * 256) + 2048 * 256);
        double Bytes(JsonElement o) => o.GetProperty("weight_gb_per_s").GetDouble() * o.GetProperty("ms_per_step").GetDouble() * 1e6;
        Assert.That(decode.Sum(Bytes), Is.EqualTo(weightBytes).Within(1e-6 * weightBytes));
        // The linear layers' weights at 2 bytes; the norms and the embedding row at 4.
        AssertDecodeBytes(r, 2 * (4 * (4 * d * d + 3 * d * ff) + v * d) + 4 * (4 * 2 * d + d + d));

        var (code, stdout, stderr) = Run([.. Small, "--weights", "bf16"]);
        Assert.That(code, Is.Zero, stderr);
        Assert.That(stdout, Does.Contain("linear weights in bf16").And.Contain("bf16 weights are for inference"));
    }

    [Test]
    public void TableIsTheDefault()
    {
        var (code, stdout, _) = Run(Small);
        Assert.That(code, Is.Zero);
        Assert.That(stdout, Does.Contain("train step").And.Contain("tok/s").And.Contain("peak RSS"));
    }

    [TestCase("--frobnicate")]
    [TestCase("--image-tokens", "15")]
    [TestCase("--device", "tpu")]
    [TestCase("--preset", "huge")]
    [TestCase("--width", "100")]
    [TestCase("--repeats", "0")]
    [TestCase("--weights", "f16")]
    public void BadOptionsAreUsageErrors(params string[] extra)
    {
        var (code, _, stderr) = Run([.. Small, .. extra]);
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stderr, Does.StartWith("vwlmm bench: "));
    }

    /// <summary>
    /// Each shape option within its range, together more tokens than a batch takes: refused at once, naming the
    /// options, instead of minutes spent drawing a synthetic batch of 4·10⁹ ids (seen before the limit existed).
    /// </summary>
    [Test]
    public void ABatchOfTooManyTokensIsRefusedAtOnce()
    {
        var (code, stdout, stderr) = Run("bench", "--batch", "1025", "--image-tokens", "1024", "--text-tokens", "1");
        Assert.That(code, Is.EqualTo(2));
        Assert.That(stdout, Is.Empty);
        Assert.That(stderr.Trim(), Is.EqualTo("vwlmm bench: options --batch, --image-tokens, --text-tokens: 1025 × (1024 + 1) = " +
                                              "1,050,625 tokens a batch, more than the 1,048,576 the benchmark takes (see vwlmm bench --help)"));
    }
}
