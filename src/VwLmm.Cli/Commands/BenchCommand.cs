using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using VwLmm.Core;
using VwLmm.Cpu;
using VwLmm.Cuda;
using VwLmm.Data.Batching;
using VwLmm.Data.Conversations;
using VwLmm.Model;
using VwLmm.Model.Checkpoints;

namespace VwLmm.Cli.Commands;

/// <summary>
/// <c>vwlmm bench</c>: times a preset model on synthetic data — train step (forward + backward + AdamW), forward at
/// batch 1, prefill and greedy KV-cache decode at batch 1 — and reports achieved GFLOP/s (<see cref="StepFlops"/>), peak
/// RSS and managed allocations per steady-state step; <c>--ops</c> adds per-op profiles of the train step and of decoding.
/// bench/reference/torch_peer.py prints the same JSON keys for PyTorch. With <c>--device cuda</c> or <c>emu</c> it is the
/// GPU kernel lab instead: every CUDA kernel family timed at the preset's shapes (<see cref="KernelLab"/>); adding
/// <c>--model-bench</c> runs the model benchmark on that device (each timing ends with a device synchronisation).
/// </summary>
public sealed class BenchCommand : ICommand
{
    private const float LearningRate = 1e-4f, WeightDecay = 0.01f, MaxGradNorm = 1f;
    private const ulong Seed = 1234;

    public string Name => "bench";
    public string Summary => "time train step, forward, prefill and decode of a preset model; with --device cuda|emu, every CUDA kernel";

    public string Help => """
        usage: vwlmm bench [--preset bench-5m] [--device cpu|emu|cuda|auto] [--threads N] [--repeats R] [--warmup W] [--batch B]
                           [--image-tokens N] [--text-tokens N] [--width D] [--decode-tokens N] [--weights bf16] [--model-bench] [--no-graphs] [--json] [--ops]

        Builds the preset with random weights and a synthetic batch (one image at the start of each sample, random text
        ids, labels on the text) and reports medians over R repeats after W warm-up runs:
          train_step_ms        forward + backward + AdamW over the batch (VM head and visual-word KL on)
          forward_ms           forward with losses at batch 1, no tape
          prefill_ms           Generator prefill of one prompt (image + text) into the KV cache
          decode_tokens_per_s  greedy decode with the KV cache at batch 1: N tokens / the median over repeats of
                       (time of prefill + N tokens − that repeat's prefill-only time)
          decode_bytes_per_token, decode_gb_per_s, memory_gb_per_s, percent_of_bandwidth  what a decoded token must
                               read (the decoder's weights as stored, one embedding row, its KV cache on average) and
                               at what rate, against memory_gb_per_s: on the CPU the rate at which the bench's
                               threads read a buffer of that size, measured after the decode (CpuBandwidth), on a
                               GPU its datasheet bandwidth from the peak table
          gflops, percent_of_peak  train step work (analytic, see docs/BENCHMARKS.md) / time; on the CPU against
                               peak_gflops, the FMA rate of the bench's threads measured before each timed train
                               step (CpuPeak; the median of those), on a GPU against its fp32 peak from the peak
                               table; cpu_gemm names the GEMM that ran
          peak_rss_mb          VmHWM of the process, next to params+grads+moments+activations; startup_rss_mb: the
                               resident set before the model was built (the runtime's own)
          allocs_per_step      managed bytes allocated per steady-state train step (all threads)

          --preset NAME        model preset (default bench-5m)
          --device D           cpu (default): the model benchmark above; cuda: the GPU kernel lab (below); emu: the
                               kernel lab on the CPU kernel emulator, which checks the lab runs but times nothing real;
                               auto: cuda when a GPU is usable, else cpu
          --model-bench        with --device cuda|emu: the model benchmark above on that device instead of the lab
                               (every timing waits for the device to finish)
          --no-graphs          with --model-bench on cuda|emu: decode runs every step's ops instead of recording the
                               second step as a CUDA graph and replaying it for each later token
          --threads N          worker and OpenBLAS threads (default 2)
          --repeats R          timed runs per metric (default 5)
          --warmup W           untimed runs first (default 5: the first steps run while the JIT recompiles hot methods)
          --batch B            train batch size (default 8)
          --image-tokens N     patches per image, a square k² (sets the image to k·patch pixels; default the preset's)
          --text-tokens N      text tokens per sample (default 64)
          --width D            LLM hidden size (SwiGLU width 3·D; default the preset's)
          --decode-tokens N    tokens generated for the decode rate (default 64)
          --weights bf16       linear layers' weights stored in bf16, as `chat --weights bf16` runs: forward, prefill
                               and decode only (no train step: bf16 weights are for inference); default f32
          --json               one JSON object instead of the table
          --ops                per-op profiles of the train step (count, time, share, GFLOP/s) and of a decoded token

        GPU kernel lab (--device cuda|emu): every kernel family of kernels/*.cu and the cuBLAS GEMM, called through the
        CUDA backend at the preset's shapes (--preset, --batch, --image-tokens, --text-tokens, --width). Per op: the median
        time of one call over R calls timed with CUDA events after W untimed ones, a write of 2 × the L2 size before each
        timed call; bytes and FLOPs from the cost model (docs/KERNELS.md); GB/s and TFLOP/s; and, on a GPU of the peak
        table (A100, H100 SXM/PCIe/NVL, H200), which roofline bounds the op and the % of that bound reached.

        example: vwlmm bench --preset bench-5m --threads 2 --repeats 5 --json
                 vwlmm bench --device cuda --preset llava-7b --batch 1 --repeats 20
                 vwlmm bench --device cuda --model-bench --json
        """;

    public IReadOnlyList<string> Flags { get; } = ["--json", "--ops", "--model-bench", "--no-graphs"];

    public IReadOnlyList<string> Valued { get; } =
        ["--preset", "--device", "--threads", "--repeats", "--warmup", "--batch", "--image-tokens", "--text-tokens", "--width", "--decode-tokens", .. Shared.InferenceOptions];

    public int Run(CliArgs args, TextWriter stdout)
    {
        string device = Backends.Device(args, Console.Error);
        if (device != "cpu" && !args.Has("--model-bench")) return RunKernelLab(args, device, stdout);
        int threads = args.GetInt("--threads", 2, 1, 256);
        int repeats = args.GetInt("--repeats", 5, 1, 10_000);
        int warmup = args.GetInt("--warmup", 5, 0, 10_000);
        int batch = args.GetInt("--batch", 8, 1, 4096);
        int textTokens = args.GetInt("--text-tokens", 64, 1, 1 << 20);
        int decodeTokens = args.GetInt("--decode-tokens", 64, 1, 1 << 20);
        var config = Configure(args, batch, textTokens, decodeTokens);
        var weights = Shared.Weights(args);
        // What the runtime holds before the model exists, so that a peak can be read net of it beside another engine's.
        double startupRssMb = StatusMb("VmRSS:");

        // Bench's own thread default (2, the side-by-side's), not every core as other verbs.
        using var compute = Backends.Create(device, threads);
        var (deviceName, peakGflops) = compute switch
        {
            CudaBackend { Runtime: DriverRuntime gpu } => (gpu.DeviceName, DevicePeaks.Find(gpu.Info.Name)?.Fp32Tflops * 1000),
            CudaBackend cuda => (cuda.Runtime.DeviceName, null),
            _ => ("cpu", (double?)null),
        };
        var profiler = args.Has("--ops") ? new ProfilingBackend(compute) : null;
        try
        {
            using var run = new BenchRun(profiler ?? compute, config, weights, batch, textTokens, decodeTokens, repeats, warmup,
                                        graphs: !args.Has("--no-graphs"));
            // The CPU's peak is measured beside each timed train step, not at start-up, where the JIT's background
            // compilation takes a core; without a train step (bf16 weights), once after the run.
            Func<double>? measurePeak = compute is CpuBackend ? () => CpuPeak.MeasureGflops(threads, PeakTries) : null;
            Func<long, double?> memoryGBs = compute switch
            {
                CpuBackend => bytes => CpuBandwidth.MeasureReadGBs(threads, bytes),
                CudaBackend { Runtime: DriverRuntime gpu } => _ => DevicePeaks.Find(gpu.Info.Name)?.BandwidthGBs,
                _ => _ => null,
            };
            var result = run.Measure(threads, deviceName, peakGflops, measurePeak, memoryGBs);
            if (compute is CpuBackend cpu)
                result = result with { PeakGflops = result.Train?.PeakGflops ?? CpuPeak.MeasureGflops(threads), CpuGemm = cpu.GemmKernel };
            result = result with { StartupRssMb = startupRssMb };
            var ops = profiler is null ? null : run.Profile(profiler);

            if (args.Has("--json")) stdout.WriteLine(ToJson(result, ops));
            else WriteTable(stdout, result, ops);
            return 0;
        }
        catch (OutOfMemoryException)
        {
            // The shape options accept what some machine can hold: say which of them to lower, not only that memory ran out.
            throw new CliException($"batch {batch} of {config.ImageTokens} image + {textTokens} text tokens, LLM width {config.Llm.HiddenSize}: " +
                                   "the model, its activations or its KV cache do not fit in memory; lower --batch, --text-tokens, --image-tokens or --width");
        }
    }

    /// <summary>The kernel lab on the CUDA backend of <paramref name="device"/> (emu or cuda, as <see cref="Backends.Device"/> resolved it).</summary>
    private static int RunKernelLab(CliArgs args, string device, TextWriter stdout)
    {
        if (args.Has("--ops")) throw new UsageException("option --ops: profiles the model's train step (add --model-bench); the kernel lab times every kernel already");
        if (args.Has("--weights")) throw new UsageException("option --weights: applies to the model benchmark (add --model-bench)");
        int repeats = args.GetInt("--repeats", 5, 1, 10_000);
        int warmup = args.GetInt("--warmup", 5, 0, 10_000);
        int batch = args.GetInt("--batch", 8, 1, 4096);
        int textTokens = args.GetInt("--text-tokens", 64, 1, 1 << 20);
        var config = Configure(args, batch, textTokens, 0);
        var v = config.Vision;
        var l = config.Llm;
        var shape = new KernelLabShape(batch, v.NumChannels, v.ImageSize, v.PatchSize, v.HiddenSize, v.NumAttentionHeads, v.IntermediateSize,
                                       config.ImageTokens, textTokens, l.HiddenSize, l.NumAttentionHeads, l.NumKeyValueHeads, l.IntermediateSize,
                                       l.VocabSize, config.ParameterCount());
        using var backend = (CudaBackend)Backends.Create(device, 1);
        var timings = new KernelLab(backend, repeats, warmup).Run(shape);
        var lab = new LabReport(args.Get("--preset") ?? "bench-5m", backend.Runtime, shape, repeats, warmup, timings,
                                backend.Runtime is DriverRuntime gpu ? DevicePeaks.Find(gpu.Info.Name) : null);
        stdout.Write(args.Has("--json") ? lab.ToJson() + Environment.NewLine : lab.ToTable());
        return 0;
    }

    private sealed record LabReport(string Preset, ICudaRuntime Runtime, KernelLabShape Shape, int Repeats, int Warmup,
                                    IReadOnlyList<KernelTiming> Timings, DevicePeak? Peak)
    {
        private const string EmulatorNote =
            "EMULATOR: CUDA kernels run on the CPU under kernels/emu; these are emulator wall-clock times, NOT GPU timings";

        private string PeakNote => Peak is { } p
            ? $"peaks of {p.Model}: {p.BandwidthGBs:0} GB/s, {p.Fp32Tflops:0.0} fp32 TFLOP/s (datasheet)"
            : $"no % of peak: '{Runtime.DeviceName}' is not in the peak table (A100, H100 SXM/PCIe/NVL, H200)";

        public string ToTable()
        {
            var w = new StringWriter();
            string F(double x, string fmt) => x.ToString(fmt, CultureInfo.InvariantCulture);
            if (Runtime.IsEmulated) w.WriteLine(EmulatorNote);
            var s = Shape;
            w.WriteLine($"vwlmm bench kernel lab on {Runtime.DeviceName}: {Preset} shapes, batch {s.Batch}, vision {s.VisionTokens} tokens × {s.VisionWidth}, " +
                        $"LLM {s.LlmTokens} tokens × {s.LlmWidth}, vocab {s.Vocab}");
            w.WriteLine($"median of {Repeats} calls after {Warmup} untimed, {F(2 * Runtime.L2CacheBytes / 1048576.0, "0")} MiB written before each " +
                        $"to flush the {F(Runtime.L2CacheBytes / 1048576.0, "0")} MiB L2; {PeakNote}");
            w.WriteLine($"  {"op",-24} {"file",-11} {"shape",-32} {"time µs",10} {"MB",8} {"GFLOP",8} {"GB/s",8} {"TFLOP/s",8}" +
                        (Peak is null ? "" : $" {"bound",-6} {"% peak",6}"));
            foreach (var t in Timings)
            {
                w.Write($"  {t.Op,-24} {t.Module,-11} {t.Shape,-32} {F(t.Milliseconds * 1000, "0.0"),10} {F(t.Cost.Bytes / 1e6, "0.00"),8} " +
                        $"{F(t.Cost.Flops / 1e9, "0.000"),8} {F(t.GBs, "0.0"),8} {F(t.Tflops, "0.000"),8}");
                if (Peak is { } p)
                {
                    var (bound, percent) = t.OfPeak(p);
                    w.Write($" {bound,-6} {F(percent, "0.0"),6}");
                }
                w.WriteLine();
            }
            return w.ToString();
        }

        public string ToJson()
        {
            using var ms = new MemoryStream();
            using (var w = new Utf8JsonWriter(ms))
            {
                w.WriteStartObject();
                w.WriteString("engine", "vwlmm");
                w.WriteString("mode", "kernel_lab");
                w.WriteString("device", Runtime.DeviceName);
                w.WriteBoolean("emulated", Runtime.IsEmulated);
                if (Runtime.IsEmulated) w.WriteString("note", EmulatorNote);
                w.WriteString("preset", Preset);
                w.WriteNumber("batch", Shape.Batch);
                w.WriteNumber("image_tokens", Shape.ImageTokens);
                w.WriteNumber("text_tokens", Shape.TextTokens);
                w.WriteNumber("repeats", Repeats);
                w.WriteNumber("warmup", Warmup);
                w.WriteNumber("l2_bytes", Runtime.L2CacheBytes);
                w.WriteNumber("l2_flush_bytes", 2 * Runtime.L2CacheBytes);
                if (Peak is { } p)
                {
                    w.WriteStartObject("peak");
                    w.WriteString("model", p.Model);
                    w.WriteNumber("bandwidth_gb_per_s", p.BandwidthGBs);
                    w.WriteNumber("fp32_tflop_per_s", p.Fp32Tflops);
                    w.WriteEndObject();
                }
                else w.WriteNull("peak");
                w.WriteStartArray("kernels");
                foreach (var t in Timings)
                {
                    w.WriteStartObject();
                    w.WriteString("op", t.Op);
                    w.WriteString("file", t.Module);
                    w.WriteString("shape", t.Shape);
                    w.WriteNumber("time_us", t.Milliseconds * 1000);
                    w.WriteNumber("bytes", t.Cost.Bytes);
                    w.WriteNumber("flops", t.Cost.Flops);
                    w.WriteNumber("gb_per_s", t.GBs);
                    w.WriteNumber("tflop_per_s", t.Tflops);
                    if (Peak is { } peak)
                    {
                        var (bound, percent) = t.OfPeak(peak);
                        w.WriteString("bound", bound);
                        w.WriteNumber("percent_of_peak", percent);
                    }
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            return System.Text.Encoding.UTF8.GetString(ms.ToArray());
        }
    }

    /// <summary>The preset with the requested image grid, width and a context long enough for prompt + decode.</summary>
    private static VwLmmConfig Configure(CliArgs args, int batch, int textTokens, int decodeTokens)
    {
        VwLmmConfig config;
        try { config = VwLmmConfig.Presets.Get(args.Get("--preset") ?? "bench-5m"); }
        catch (ArgumentException e) { throw new UsageException($"option --preset: {e.Message}"); }
        if (args.Get("--image-tokens") is not null)
        {
            int n = args.GetInt("--image-tokens", 0, 1, 1 << 16);
            int side = (int)Math.Round(Math.Sqrt(n));
            if (side * side != n) throw new UsageException($"option --image-tokens: {n} is not a square (the patch grid is k×k)");
            config = config with { Vision = config.Vision with { ImageSize = side * config.Vision.PatchSize } };
        }
        if (args.Get("--width") is not null)
        {
            int heads = config.Llm.NumAttentionHeads;
            int width = args.GetInt("--width", 0, 2 * heads, 1 << 16);
            if (width % (2 * heads) != 0) throw new UsageException($"option --width: {width} is not a multiple of {2 * heads} ({heads} heads of even size)");
            config = config with { Llm = config.Llm with { HiddenSize = width, IntermediateSize = 3 * width } };
        }
        long tokens = (long)batch * (config.ImageTokens + textTokens);
        if (tokens > MaxBatchTokens)
            throw new UsageException($"options --batch, --image-tokens, --text-tokens: {batch} × ({config.ImageTokens} + {textTokens}) = " +
                                     $"{tokens:N0} tokens a batch, more than the {MaxBatchTokens:N0} the benchmark takes");
        int context = config.ImageTokens + textTokens + decodeTokens + 1;
        if (context > config.Llm.MaxPositionEmbeddings)
            config = config with { Llm = config.Llm with { MaxPositionEmbeddings = context } };
        config.Validate();
        return config;
    }

    /// <summary>
    /// Tries of the CPU's peak before each timed train step (each about 10 ms; the best counts). A VM's speed can move
    /// by a factor of two within minutes (docs/BENCHMARKS.md, session 47): a peak measured once, after the run, may be
    /// another moment's, and the share of it the steps reach then says more about the moment than about the engine.
    /// </summary>
    private const int PeakTries = 3;

    /// <summary>
    /// Tokens a benchmark batch holds at most: bench-5m's train step keeps about 200 KiB of activations a token, so 2^20
    /// tokens is already about 200 GiB; past it, building the synthetic batch alone would take minutes before anything ran
    /// out of memory.
    /// </summary>
    private const int MaxBatchTokens = 1 << 20;

    private sealed record Result(
        VwLmmConfig Config, DType Weights, string Device, double? PeakGflops, int Threads, int Batch, int TextTokens, long Parameters,
        StepFlops Flops, TrainResult? Train, double ForwardMs, double PrefillMs, double DecodeTokensPerSecond, double PeakRssMb, double ModelMemoryMb)
    {
        public CpuGemm? CpuGemm { get; init; }
        public double StartupRssMb { get; init; } = double.NaN;

        public double? Gflops => Flops.Train / (Train?.StepMs * 1e6);
        public double? PercentOfPeak => 100 * Gflops / PeakGflops;

        /// <summary>See <see cref="BenchRun.DecodeBytesPerToken"/>.</summary>
        public long DecodeBytesPerToken { get; init; }

        /// <summary>What the decode's bytes can stream at (GB/s; see <see cref="BenchRun.Measure"/>), null where unknown.</summary>
        public double? MemoryGBs { get; init; }

        public double DecodeGBs => DecodeBytesPerToken * DecodeTokensPerSecond / 1e9;
        public double? PercentOfBandwidth => 100 * DecodeGBs / MemoryGBs;
    }

    /// <summary>The train step's measures (none with BF16 weights, which cannot be trained); Peaks, the peaks measured
    /// before each timed step (null where none was).</summary>
    private sealed record TrainResult(double StepMs, double ActivationMb, double AllocatedBytesPerStep, double Gen0PerStep,
                                      long ForwardBytes, long BackwardBytes, long OptimizerBytes, int TapeOps, double[]? Peaks)
    {
        public double? PeakGflops => Peaks is null ? null : Median(Peaks);
    }

    /// <summary>
    /// One op's row of a profile; a step is a train step or, in the decode profile, one generated token. Rate is
    /// GFLOP/s, except in the decode GEMM rows: GB/s of the weight matrix read, which bounds a matrix-vector product.
    /// </summary>
    private sealed record OpRow(string Op, double CallsPerStep, double MsPerStep, double MeanUs, double Percent, double? Rate);

    /// <summary>The train step's, the batch-1 forward's and one decoded token's per-op rows, and the GEMM rows of each by shape.</summary>
    private sealed record OpProfiles(List<OpRow>? Train, List<OpRow>? TrainGemms, List<OpRow> Forward, List<OpRow> ForwardGemms,
                                     List<OpRow> Decode, List<OpRow> DecodeGemms);

    /// <summary>One model, its synthetic inputs and the measurements over them.</summary>
    private sealed class BenchRun(IBackend backend, VwLmmConfig config, DType weights, int batch, int textTokens, int decodeTokens,
                                  int repeats, int warmup, bool graphs) : IDisposable
    {
        private readonly VwLmmModel _model = CreateModel(backend, config, weights);
        private readonly TokenizedConversation[] _samples = Samples(config, batch, textTokens);
        private readonly float[] _pixels = Pixels(config, batch);

        private static VwLmmModel CreateModel(IBackend backend, VwLmmConfig config, DType weights)
        {
            var model = new VwLmmModel(backend, config, weights);
            model.InitializeRandom(Seed);
            if (weights == DType.F32) model.Parameters.SetTrainable(Enum.GetValues<ParameterGroup>());
            return model;
        }

        private bool Trains => weights == DType.F32;

        // Sample s: the image sentinel, then random ids; every text id is a label.
        private static TokenizedConversation[] Samples(VwLmmConfig config, int batch, int textTokens)
        {
            var rng = new Rng(Seed + 1);
            var samples = new TokenizedConversation[batch];
            for (int s = 0; s < batch; s++)
            {
                var ids = new int[1 + textTokens];
                ids[0] = Llava.ImageTokenIndex;
                for (int i = 1; i < ids.Length; i++) ids[i] = (int)(rng.NextDouble() * config.Llm.VocabSize);
                var labels = (int[])ids.Clone();
                labels[0] = Llava.IgnoreIndex;
                samples[s] = new TokenizedConversation(ids, labels);
            }
            return samples;
        }

        private static float[] Pixels(VwLmmConfig config, int batch)
        {
            var v = config.Vision;
            var rng = new Rng(Seed + 2);
            var px = new float[batch * v.NumChannels * v.ImageSize * v.ImageSize];
            for (int i = 0; i < px.Length; i++) px[i] = (float)rng.NextNormal();
            return px;
        }

        private int ImageSize => config.Vision.ImageSize;
        private int PixelsPerImage => config.Vision.NumChannels * ImageSize * ImageSize;

        /// <param name="memoryGBs">the bandwidth a decoded token's bytes can stream at: the datasheet's for a GPU, or a
        /// measurement of that many bytes read (<see cref="CpuBandwidth"/>), made after the decode is timed; null for none.</param>
        public Result Measure(int threads, string device, double? peakGflops, Func<double>? measurePeak, Func<long, double?> memoryGBs)
        {
            var train = Trains ? MeasureTrain(measurePeak) : null;
            var (forwardMs, prefillMs, decodeTokensPerSecond) = MeasureInference();
            long weightBytes = _model.Parameters.All.Sum(p => p.Value.Bytes);
            // With training: parameters, gradients and both moments (all F32) plus the activations; without: the weights.
            double modelMemoryMb = train is null ? weightBytes / 1048576.0 : 4 * weightBytes / 1048576.0 + train.ActivationMb;
            long decodeBytes = DecodeBytesPerToken();
            return new Result(config, weights, device, peakGflops, threads, batch, textTokens, _model.Parameters.All.Sum(p => p.Numel),
                StepFlops.Of(config, batch, textTokens), train, forwardMs, prefillMs, decodeTokensPerSecond, PeakRssMb(), modelMemoryMb)
            {
                DecodeBytesPerToken = decodeBytes,
                MemoryGBs = memoryGBs(decodeBytes),
            };
        }

        /// <summary>
        /// Bytes a decoded token must read, on average over the timed decode steps: every weight of the decoder's layers,
        /// its final norm and lm_head once (as stored: bf16 under --weights bf16), its token's row of embed_tokens, and
        /// every layer's cached keys and values up to its position. Step i of N (the prefill chose the first token)
        /// attends over the prompt's P positions and i more, so over P + (N + 1)/2 on average.
        /// </summary>
        public long DecodeBytesPerToken()
        {
            var dec = _model.Decoder;
            var l = config.Llm;
            long weights = _model.Parameters.All
                .Where(p => p.Name.StartsWith(HfNames.DecoderLayerPrefix, StringComparison.Ordinal))
                .Append(dec.FinalNorm).Append(dec.LmHead).Sum(p => p.Value.Bytes);
            long embeddingRow = dec.EmbedTokens.Value.Bytes / l.VocabSize;
            long prompt = config.ImageTokens + textTokens;
            double keys = prompt + (decodeTokens + 1) / 2.0;
            long cache = (long)Math.Round(2 * dec.LayerCount * keys * l.NumKeyValueHeads * l.HeadDim * sizeof(float));
            return weights + embeddingRow + cache;
        }

        /// <summary>The timed steps, each after a measurement of the peak when <paramref name="measurePeak"/> is given.</summary>
        private TrainResult MeasureTrain(Func<double>? measurePeak)
        {
            using var train = TrainStepper();
            for (int i = 0; i < warmup; i++) train.Step();
            // The timing arrays and the delegate exist before the count starts, and the count stops around the peak's
            // threads: only the steps are measured.
            var trainMs = new double[repeats];
            double[]? peaks = measurePeak is null ? null : new double[repeats];
            var one = new double[1];
            Action step = train.Step;
            long bytes = 0;
            int gen0 = 0;
            for (int r = 0; r < repeats; r++)
            {
                if (peaks is not null) peaks[r] = measurePeak!();
                long bytes0 = GC.GetTotalAllocatedBytes(precise: true);
                int collections0 = GC.CollectionCount(0);
                trainMs[r] = Time(backend, one, step)[0];
                bytes += GC.GetTotalAllocatedBytes(precise: true) - bytes0;
                gen0 += GC.CollectionCount(0) - collections0;
            }
            var (fwdBytes, bwdBytes, optBytes, recordedOps) = train.AllocationsByPhase();
            return new TrainResult(Median(trainMs), train.ActivationBytes / 1048576.0, bytes / (double)repeats, gen0 / (double)repeats,
                                   fwdBytes, bwdBytes, optBytes, recordedOps, peaks);
        }

        /// <summary>One forward pass of the first sample with both losses, no tape recording: what forward_ms times.</summary>
        private Action ForwardAtBatch1(Arena arena)
        {
            var tape = new Tape(backend, arena, record: false);
            var batch1 = new BatchBuilder(_model.Vision.TokensPerImage, int.MaxValue, config.Llm.VocabSize).Build(_samples[..1]);
            var pixels1 = _pixels.AsMemory(0, PixelsPerImage);
            return () =>
            {
                tape.Reset();
                _model.Forward(tape, batch1, Ops.Input(tape, pixels1.Span, 1, config.Vision.NumChannels, ImageSize, ImageSize));
            };
        }

        /// <summary>Forward at batch 1 (ms), prefill (ms) and the decode rate (tokens/s), medians over the repeats.</summary>
        private (double ForwardMs, double PrefillMs, double DecodeTokensPerSecond) MeasureInference()
        {
            using var arena = new Arena(backend, ArenaBytes(1));
            var forward = ForwardAtBatch1(arena);
            for (int i = 0; i < warmup; i++) forward();
            var forwardMs = Time(backend, new double[repeats], forward);
            var pixels1 = _pixels.AsMemory(0, PixelsPerImage);

            using var generator = new Generator(_model, ArenaBytes(1)) { UseGraphs = graphs };
            var prompt = _samples[..1];
            var prefillOnly = new SamplingOptions { MaxNewTokens = 1 };
            var withDecode = new SamplingOptions { MaxNewTokens = 1 + decodeTokens };
            // Decode time = a generation of 1 + N tokens less a prefill-only one: both paths must be compiled before
            // either is timed, whatever --warmup says, or the JIT lands on one side of the difference.
            for (int i = 0; i < Math.Max(1, warmup); i++)
            {
                generator.Generate(prompt, pixels1.Span, prefillOnly);
                generator.Generate(prompt, pixels1.Span, withDecode);
            }
            // Each repeat's decode time is its generation less the prefill timed just before it, and the rate comes
            // from the median of those differences (as torch_peer.py does): a pair shares the machine's state, where
            // a difference of two medians mixes a slow prefill with a fast generation.
            var prefillMs = new double[repeats];
            var decodeDiffMs = new double[repeats];
            for (int r = 0; r < repeats; r++)
            {
                prefillMs[r] = Time(backend, new double[1], () => generator.Generate(prompt, pixels1.Span, prefillOnly))[0];
                decodeDiffMs[r] = Time(backend, new double[1], () => generator.Generate(prompt, pixels1.Span, withDecode))[0] - prefillMs[r];
            }
            double prefillMedian = Median(prefillMs), decodeMs = Median(decodeDiffMs);
            if (decodeMs <= 0)
                throw new CliException(string.Create(CultureInfo.InvariantCulture,
                    $"decoding {decodeTokens} tokens took no measurable time beyond the prefill's noise (median decode {decodeMs:0.###} ms, prefill {prefillMedian:0.###} ms); raise --decode-tokens or --repeats"));
            return (Median(forwardMs), prefillMedian, decodeTokens / (decodeMs / 1000));
        }

        /// <summary>
        /// Per-op totals over R train steps, per step, slowest first, with GFLOP/s where the work is known analytically;
        /// the GEMMs again by layout and shape; before them <see cref="ProfileForward"/> and <see cref="ProfileDecode"/>.
        /// </summary>
        public OpProfiles Profile(ProfilingBackend profiler)
        {
            var (forward, forwardGemms) = ProfileForward(profiler);
            var (decode, decodeGemms) = ProfileDecode(profiler);
            if (!Trains) return new OpProfiles(null, null, forward, forwardGemms, decode, decodeGemms);
            using var train = TrainStepper();
            train.Step();
            profiler.ResetCounters();
            double stepMs = Time(backend, new double[repeats], train.Step).Sum() / repeats;
            var f = StepFlops.Of(config, batch, textTokens);
            var rows = OpRows(profiler, repeats, stepMs, op => op switch
            {
                "Gemm" => 3 * f.Linear,
                "PatchEmbedForward" or "PatchEmbedBackward" => f.PatchEmbed,
                "AttentionForward" => f.Attention,
                "AttentionBackward" => 2 * f.Attention,
                _ => null,
            });
            var gemms = GemmRows(profiler, repeats, stepMs);
            return new OpProfiles(rows, gemms, forward, forwardGemms, decode, decodeGemms);
        }

        /// <summary>Per-op and per-GEMM-shape totals of the batch-1 forward pass forward_ms times, per pass.</summary>
        public (List<OpRow> Ops, List<OpRow> Gemms) ProfileForward(ProfilingBackend profiler)
        {
            using var arena = new Arena(backend, ArenaBytes(1));
            var forward = ForwardAtBatch1(arena);
            forward();
            profiler.ResetCounters();
            double passMs = Time(backend, new double[repeats], forward).Sum() / repeats;
            return (OpRows(profiler, repeats, passMs, _ => null), GemmRows(profiler, repeats, passMs));
        }

        /// <summary>
        /// The profiler's ops over <paramref name="steps"/> steps of <paramref name="stepMs"/> each, per step, with GFLOP/s
        /// where <paramref name="work"/> knows an op's FLOPs per step, and a last row for the time outside ops.
        /// </summary>
        private static List<OpRow> OpRows(ProfilingBackend profiler, int steps, double stepMs, Func<string, double?> work)
        {
            var rows = profiler.Table().Select(t =>
            {
                double ms = t.Seconds * 1000 / steps;
                return new OpRow(t.Op, t.Calls / (double)steps, ms, t.Seconds * 1e6 / t.Calls, 100 * ms / stepMs, work(t.Op) / (ms * 1e6));
            }).ToList();
            double opsMs = rows.Sum(r => r.MsPerStep);
            rows.Add(new OpRow("(outside ops: tape, host)", 0, stepMs - opsMs, 0, 100 * (stepMs - opsMs) / stepMs, null));
            return rows;
        }

        /// <summary>
        /// The profiler's GEMM time by layout and shape, per step, with each shape's rate(shape, calls, seconds): GFLOP/s
        /// unless given.
        /// </summary>
        private static List<OpRow> GemmRows(ProfilingBackend profiler, int steps, double stepMs,
                                            Func<GemmShape, long, double, double>? rate = null) =>
            profiler.GemmTable().Select(g => new OpRow(g.Shape.ToString(), g.Calls / (double)steps, g.Seconds * 1000 / steps,
                g.Seconds * 1e6 / g.Calls, 100 * g.Seconds * 1000 / steps / stepMs,
                rate is null ? g.Shape.Flop * g.Calls / g.Seconds / 1e9 : rate(g.Shape, g.Calls, g.Seconds))).ToList();

        /// <summary>
        /// Per-op and per-GEMM-shape totals of greedy decoding at batch 1, per token: the counters and the clock start
        /// when the prefill's token is chosen, so the decode steps alone are counted (a difference of two generations'
        /// counters, the first way this was done, read negative times whenever the machine's noise beat a row's time).
        /// </summary>
        public (List<OpRow> Ops, List<OpRow> Gemms) ProfileDecode(ProfilingBackend profiler)
        {
            using var generator = new Generator(_model, ArenaBytes(1));
            var prompt = _samples[..1];
            var pixels1 = _pixels.AsMemory(0, PixelsPerImage);
            var options = new SamplingOptions { MaxNewTokens = 1 + decodeTokens };
            generator.Generate(prompt, pixels1.Span, options);
            int tokens = 0;
            long start = 0;
            generator.Generate(prompt, pixels1.Span, options, (_, _) =>
            {
                if (tokens++ > 0) return;
                backend.Synchronize();
                profiler.ResetCounters();
                start = Stopwatch.GetTimestamp();
            });
            backend.Synchronize();
            double elapsedMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
            int steps = tokens - 1;
            if (steps < 1) throw new CliException("the decode profile's generation stopped at its first token; raise --decode-tokens");
            double tokenMs = elapsedMs / steps, weightElementBytes = weights.Size();
            return (OpRows(profiler, steps, tokenMs, _ => null),
                    GemmRows(profiler, steps, tokenMs, (shape, calls, seconds) => weightElementBytes * shape.N * shape.K * shape.Batch * calls / seconds / 1e9));
        }

        /// <summary>
        /// Arena capacity for a step over <paramref name="samples"/> sequences: a generous bound on activations and their
        /// gradients (about 24 row-wide tensors per layer, 8 vocabulary-wide ones per LLM row); address space only, touched as used.
        /// </summary>
        private long ArenaBytes(int samples)
        {
            var v = config.Vision;
            var l = config.Llm;
            long visionRows = (long)samples * (v.NumPatches + 1), llmRows = (long)samples * (config.ImageTokens + textTokens + decodeTokens);
            long floats = visionRows * config.VisionLayersUsed * 24L * Math.Max(v.HiddenSize, v.IntermediateSize)
                        + llmRows * (l.NumHiddenLayers * 24L * Math.Max(l.HiddenSize, l.IntermediateSize) + 8L * l.VocabSize);
            return (64L << 20) + floats * sizeof(float);
        }

        private TrainStepper TrainStepper() => new(backend, _model, _samples, _pixels, ArenaBytes(batch));

        public void Dispose() => _model.Dispose();
    }

    /// <summary>A train step as the trainer does one (model forward with the VM loss, tape backward, AdamW with clipping), over a fixed batch.</summary>
    private sealed class TrainStepper(IBackend backend, VwLmmModel model, TokenizedConversation[] samples, float[] pixels, long arenaBytes) : IDisposable
    {
        private readonly Tape _tape = new(backend, new Arena(backend, arenaBytes), record: true);
        private readonly AdamW _adam = new(backend, model.Parameters.All, weightDecay: WeightDecay);
        private readonly Batch _batch = new BatchBuilder(model.Vision.TokensPerImage, int.MaxValue, model.Config.Llm.VocabSize).Build(samples);
        private readonly int[] _pixelShape = [samples.Length, model.Config.Vision.NumChannels, model.Config.Vision.ImageSize, model.Config.Vision.ImageSize];

        public long ActivationBytes => _tape.Arena.HighWater;

        public void Step()
        {
            Forward();
            _tape.Backward();
            _adam.Step(LearningRate, MaxGradNorm);
        }

        // One tape for every step: its reset keeps the node list, gradient maps and tensor handles of the last step.
        private void Forward()
        {
            _adam.ZeroGrad();
            _tape.Reset();
            _tape.Track(model.Parameters.All);
            model.Forward(_tape, _batch, Ops.Input(_tape, pixels, _pixelShape));
        }

        /// <summary>Managed bytes this thread allocates in each phase of one step, and the ops the forward records.</summary>
        public (long forward, long backward, long optimizer, int recordedOps) AllocationsByPhase()
        {
            long a = GC.GetAllocatedBytesForCurrentThread();
            Forward();
            long b = GC.GetAllocatedBytesForCurrentThread();
            int recorded = _tape.RecordedOps;
            _tape.Backward();
            long c = GC.GetAllocatedBytesForCurrentThread();
            _adam.Step(LearningRate, MaxGradNorm);
            long d = GC.GetAllocatedBytesForCurrentThread();
            return (b - a, c - b, d - c, recorded);
        }

        public void Dispose()
        {
            _adam.Dispose();
            _tape.Arena.Dispose();
        }
    }

    /// <summary>Runs action once per element of ms, storing each run's milliseconds up to the end of the work it queued
    /// on the backend (a GPU runs asynchronously); returns ms.</summary>
    private static double[] Time(IBackend backend, double[] ms, Action action)
    {
        for (int i = 0; i < ms.Length; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            action();
            backend.Synchronize();
            ms[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }
        return ms;
    }

    private static double Median(double[] xs)
    {
        var s = (double[])xs.Clone();
        Array.Sort(s);
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }

    /// <summary>VmHWM (peak resident set) from /proc/self/status, in MiB; the runtime's peak working set elsewhere.</summary>
    private static double PeakRssMb() => StatusMb("VmHWM:") is var mb && !double.IsNaN(mb) ? mb : Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0;

    /// <summary>A kB line of /proc/self/status (VmRSS:, VmHWM:) in MiB; NaN where there is none.</summary>
    private static double StatusMb(string key)
    {
        const string status = "/proc/self/status";
        if (File.Exists(status))
            foreach (var line in File.ReadLines(status))
                if (line.StartsWith(key, StringComparison.Ordinal))
                    return long.Parse(line[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1024.0;
        return double.NaN;
    }

    private static string ToJson(Result r, OpProfiles? ops)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteString("engine", "vwlmm");
            w.WriteString("device", r.Device);
            w.WriteNumber("threads", r.Threads);
            w.WriteNumber("batch", r.Batch);
            w.WriteNumber("image_tokens", r.Config.ImageTokens);
            w.WriteNumber("text_tokens", r.TextTokens);
            w.WriteNumber("width", r.Config.Llm.HiddenSize);
            w.WriteNumber("params", r.Parameters);
            w.WriteString("weights", r.Weights == DType.BF16 ? "bf16" : "f32");
            w.WriteNumber("train_gflop_per_step", r.Flops.Train / 1e9);
            var t = r.Train;
            Number(w, "train_step_ms", t?.StepMs);
            w.WriteNumber("forward_ms", r.ForwardMs);
            w.WriteNumber("prefill_ms", r.PrefillMs);
            w.WriteNumber("decode_tokens_per_s", r.DecodeTokensPerSecond);
            w.WriteNumber("decode_bytes_per_token", r.DecodeBytesPerToken);
            w.WriteNumber("decode_gb_per_s", r.DecodeGBs);
            Number(w, "memory_gb_per_s", r.MemoryGBs);
            Number(w, "percent_of_bandwidth", r.PercentOfBandwidth);
            Number(w, "gflops", r.Gflops);
            Number(w, "percent_of_peak", r.PercentOfPeak);
            Number(w, "peak_gflops", r.PeakGflops);
            if (t?.Peaks is { } peaks)
            {
                w.WriteStartArray("peak_gflops_range");
                w.WriteNumberValue(peaks.Min());
                w.WriteNumberValue(peaks.Max());
                w.WriteEndArray();
            }
            if (r.CpuGemm is { } gemm) w.WriteString("cpu_gemm", gemm == CpuGemm.Avx512 ? "avx512" : "openblas");
            w.WriteNumber("peak_rss_mb", r.PeakRssMb);
            Number(w, "startup_rss_mb", double.IsNaN(r.StartupRssMb) ? null : r.StartupRssMb);
            w.WriteNumber("model_memory_mb", r.ModelMemoryMb);
            Number(w, "activation_mb", t?.ActivationMb);
            Number(w, "allocs_per_step", t?.AllocatedBytesPerStep);
            Number(w, "gen0_gcs_per_step", t?.Gen0PerStep);
            Number(w, "alloc_bytes_forward", t?.ForwardBytes);
            Number(w, "alloc_bytes_backward", t?.BackwardBytes);
            Number(w, "alloc_bytes_optimizer", t?.OptimizerBytes);
            Number(w, "tape_ops", t?.TapeOps);
            if (ops is not null)
            {
                if (ops.Train is not null) WriteOps(w, "ops", ops.Train);
                if (ops.TrainGemms is not null) WriteOps(w, "gemm_shapes", ops.TrainGemms);
                WriteOps(w, "forward_ops", ops.Forward);
                WriteOps(w, "forward_gemm_shapes", ops.ForwardGemms);
                WriteOps(w, "decode_ops", ops.Decode);
                WriteOps(w, "decode_gemm_shapes", ops.DecodeGemms, "weight_gb_per_s");
            }
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(ms.ToArray());
    }

    private static void Number(Utf8JsonWriter w, string name, double? value)
    {
        if (value is { } v) w.WriteNumber(name, v);
        else w.WriteNull(name);
    }

    private static void WriteOps(Utf8JsonWriter w, string name, List<OpRow> ops, string rateKey = "gflops")
    {
        w.WriteStartArray(name);
        foreach (var o in ops)
        {
            w.WriteStartObject();
            w.WriteString("op", o.Op);
            w.WriteNumber("calls_per_step", o.CallsPerStep);
            w.WriteNumber("ms_per_step", o.MsPerStep);
            w.WriteNumber("mean_us", o.MeanUs);
            w.WriteNumber("percent_of_step", o.Percent);
            if (o.Rate is { } rate) w.WriteNumber(rateKey, rate);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    private static void WriteTable(TextWriter w, Result r, OpProfiles? ops)
    {
        var c = r.Config;
        string F(double x, string fmt = "0.00") => x.ToString(fmt, CultureInfo.InvariantCulture);
        w.WriteLine($"vwlmm bench: {r.Parameters:N0} parameters, batch {r.Batch}, {c.ImageTokens} image + {r.TextTokens} text tokens, " +
                    $"LLM width {c.Llm.HiddenSize}, {(r.Device == "cpu" ? $"cpu × {r.Threads} threads" : r.Device)}" +
                    (r.Weights == DType.BF16 ? ", linear weights in bf16" : ""));
        if (r.Train is { } t)
        {
            string ofPeak = r.PercentOfPeak is { } percent ? $"{F(percent, "0.0")}% of the {F(r.PeakGflops!.Value, "0")} GFLOP/s peak" : "no peak known for this device";
            if (t.Peaks is { } peaks) ofPeak += $", measured at {F(peaks.Min(), "0")}–{F(peaks.Max(), "0")} beside the steps";
            if (r.CpuGemm is { } gemm) ofPeak += gemm == CpuGemm.Avx512 ? ", AVX-512 GEMM" : ", OpenBLAS GEMM";
            w.WriteLine($"  train step (fwd+bwd+AdamW)   {F(t.StepMs),10} ms   {F(r.Flops.Train / 1e9, "0.000")} GFLOP → {F(r.Gflops!.Value, "0.0")} GFLOP/s ({ofPeak})");
        }
        else w.WriteLine($"  train step (fwd+bwd+AdamW)   {"-",10}      (bf16 weights are for inference)");
        w.WriteLine($"  forward, batch 1             {F(r.ForwardMs),10} ms");
        w.WriteLine($"  prefill, batch 1             {F(r.PrefillMs),10} ms");
        string ofBandwidth = r.PercentOfBandwidth is { } share
            ? $"{F(share, "0.0")}% of the {F(r.MemoryGBs!.Value, "0.0")} GB/s {(r.Device == "cpu" ? "this machine reads that many bytes at" : "of its datasheet")}"
            : "no bandwidth known for this device";
        w.WriteLine($"  decode, batch 1, KV cache    {F(r.DecodeTokensPerSecond, "0.0"),10} tok/s  " +
                    $"({F(r.DecodeBytesPerToken / 1e6, "0.00")} MB a token → {F(r.DecodeGBs, "0.0")} GB/s, {ofBandwidth})");
        if (r.Train is { } u)
        {
            w.WriteLine($"  peak RSS                     {F(r.PeakRssMb, "0.0"),10} MiB  (params+grads+moments+activations {F(r.ModelMemoryMb, "0.0")} MiB, activations {F(u.ActivationMb, "0.0")})");
            w.WriteLine($"  managed allocation per step  {F(u.AllocatedBytesPerStep / 1024, "0.0"),10} KiB  (forward {u.ForwardBytes / 1024} KiB, backward {u.BackwardBytes / 1024} KiB, AdamW {u.OptimizerBytes / 1024} KiB; {u.TapeOps} recorded ops; {F(u.Gen0PerStep, "0.00")} gen0 GCs)");
        }
        else w.WriteLine($"  peak RSS                     {F(r.PeakRssMb, "0.0"),10} MiB  (weights {F(r.ModelMemoryMb, "0.0")} MiB)");
        if (ops is null) return;
        if (ops.Train is not null) WriteOpTable(w, "train step", "step", ops.Train);
        if (ops.TrainGemms is not null) WriteOpTable(w, "train step, GEMM by layout (op(A) op(B), N = as stored, T = transposed) and M×N×K", "step", ops.TrainGemms, "shape");
        WriteOpTable(w, "forward, batch 1", "pass", ops.Forward);
        WriteOpTable(w, "forward, GEMM by layout and M×N×K", "pass", ops.ForwardGemms, "shape");
        WriteOpTable(w, "decode, per token", "token", ops.Decode);
        WriteOpTable(w, "decode, GEMM by shape (M = 1: matrix-vector products), GB/s of weights read", "token", ops.DecodeGemms, "shape", "GB/s");
    }

    private static void WriteOpTable(TextWriter w, string title, string unit, List<OpRow> ops, string first = "op", string rate = "GFLOP/s")
    {
        string F(double x, string fmt = "0.00") => x.ToString(fmt, CultureInfo.InvariantCulture);
        w.WriteLine();
        w.WriteLine($"  {title}");
        w.WriteLine($"  {first,-28} {"calls",7} {"ms/" + unit,9} {"mean µs",9} {"% " + unit,7} {rate,8}");
        foreach (var o in ops)
            w.WriteLine($"  {o.Op,-28} {F(o.CallsPerStep, "0.#"),7} {F(o.MsPerStep, "0.000"),9} {F(o.MeanUs, "0.0"),9} {F(o.Percent, "0.0"),7} {(o.Rate is { } g ? F(g, "0.0") : ""),8}");
    }
}
