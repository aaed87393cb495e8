using VwLmm.Core;
using VwLmm.Data.ShapesGrid;
using VwLmm.Model.Training;

namespace VwLmm.Model.Recipes;

/// <summary>
/// Held-out per-patch accuracy of the pretraining probes: object colour, object shape, background; and colour and shape
/// on the patches of objects in a held-out colour×shape combination alone (the ones the decoder must generalise to);
/// and the features' mean squared error against their factor codes.
/// </summary>
public sealed record VisionProbeAccuracy(double Colour, double Shape, double Background, int ObjectPatches, int Patches,
                                         double HeldOutColour = 0, double HeldOutShape = 0, int HeldOutObjectPatches = 0,
                                         double CodeError = 0);

/// <summary>
/// The ShapesGrid stand-in for a pretrained CLIP tower (LLaVA and METHOD §7 start from one; nothing here is
/// pretrained). The tower learns to name what each patch shows: three linear probes on its select-layer patch features —
/// colour (6 + "no object"), shape (4 + "no object") and background (4) — trained with cross-entropy on the train split.
/// Colour and shape are separate labels, never their combination. The probes are thrown away afterwards; the VW-LMM
/// stages then see a tower that encodes every patch's content, which is what the paper's CLIP provides.
/// <para>
/// Separate labels alone do not make the features compositional: a linear readout fitted on the training combinations
/// read held-out colour at 69%, the features carrying colour in a shape-dependent way (docs/RESULTS.md, sessions 11 and
/// 23). So the features are also regressed (mean squared error) onto a fixed factor code: the C dimensions split in
/// three blocks, one per probe, each class a random N(0, 1) vector over its probe's block, a patch's code its three
/// classes' vectors side by side. The label an augmented image withholds from its objects leaves that block free on
/// all of the image's patches (its target is the features themselves). An object of a held-out combination then has a
/// code whose colour and shape parts were each seen, only never together.
/// </para>
/// <para>
/// Why not only text: trained through the decoder alone, the from-scratch tower learned colour (a linear probe reads it
/// at 93%) but never shape (44%), since telling 4 hard-edged 6-pixel shapes apart independently of their colour needs a
/// nonlinear per-pixel object mask that the indirect caption/QA gradient does not teach within minutes (docs/RESULTS.md).
/// </para>
/// </summary>
public sealed class ShapesGridVisionPretraining : IDisposable
{
    private const int Colours = 6, Shapes = 4, Grounds = 4;
    private static readonly string[] HeadNames = ["colour", "shape", "background"];
    private static readonly int[] HeadSizes = [Colours + 1, Shapes + 1, Grounds];
    private static readonly int[] CodeRows = [0, Colours + 1, Colours + 1 + Shapes + 1]; // each head's first row of _codes
    private const float CodeWeight = 1f;

    private readonly VwLmmModel _model;
    private readonly ShapesGridRecipe _recipe;
    private readonly Parameter[] _heads; // per probe: weight [K, C], bias [K]
    private readonly float[] _codes; // the factor codes [Colours + 1 + Shapes + 1 + Grounds, C], fixed

    /// <param name="seed">initialises the probes, then draws the factor codes.</param>
    public ShapesGridVisionPretraining(VwLmmModel model, ShapesGridRecipe recipe, ulong seed)
    {
        _model = model;
        _recipe = recipe;
        int c = model.Config.Vision.HiddenSize;
        var rng = new Rng(seed);
        _heads = new Parameter[2 * HeadSizes.Length];
        for (int h = 0; h < HeadSizes.Length; h++)
        {
            var w = new Parameter(model.Backend, $"probe.{HeadNames[h]}.weight", new Shape(HeadSizes[h], c)) { Trainable = true };
            var host = new float[w.Numel];
            for (int i = 0; i < host.Length; i++) host[i] = (float)(0.02 * rng.NextNormal());
            model.Backend.Upload<float>(w.Value, host);
            var b = new Parameter(model.Backend, $"probe.{HeadNames[h]}.bias", new Shape(HeadSizes[h])) { Trainable = true };
            model.Backend.Fill(b.Value, 0f);
            (_heads[2 * h], _heads[2 * h + 1]) = (w, b);
        }
        _codes = new float[HeadSizes.Sum() * c];
        for (int h = 0, row = 0; h < HeadSizes.Length; h++)
        {
            var (lo, hi) = Block(h, c);
            for (int k = 0; k < HeadSizes[h]; k++, row++)
                for (int i = lo; i < hi; i++) _codes[row * c + i] = (float)rng.NextNormal();
        }
    }

    /// <summary>
    /// Trains the tower and the probes for <paramref name="steps"/> AdamW steps of <paramref name="batchSize"/> train
    /// images (sample indices from <paramref name="firstSample"/> on), cosine-decayed from <paramref name="lr"/> after a
    /// 5% warm-up; reports (step, the code regression's error plus the probes' mean cross-entropy) after each step.
    /// </summary>
    public void Train(int steps, int batchSize, double lr, long firstSample = 0, Action<int, double>? onStep = null)
    {
        var tower = _model.Parameters.InGroup(ParameterGroup.Vision).ToArray();
        var trainable = _model.Parameters.All.Where(p => p.Trainable).ToArray();
        foreach (var p in _model.Parameters.All) p.Trainable = false;
        foreach (var p in tower) p.Trainable = true;
        var schedule = new StageConfig { Name = "vision", Data = "patches", Trainable = [ParameterGroup.Vision], Steps = steps, Lr = lr, WarmupRatio = 0.05, MinLrRatio = 0.1 };
        using var arena = new Arena(_model.Backend, 256L << 20);
        using var adam = new AdamW(_model.Backend, [.. tower, .. _heads], weightDecay: 0.01f);
        var tape = new Tape(_model.Backend, arena, record: true);
        try
        {
            for (int step = 0; step < steps; step++)
            {
                adam.ZeroGrad();
                tape.Reset();
                tape.Track(tower);
                tape.Track(_heads);
                var (code, probes) = Loss(tape, Split.Train, firstSample + (long)step * batchSize, batchSize, accuracy: null);
                tape.Backward();
                adam.Step((float)schedule.LearningRate(step), maxNorm: 1f);
                onStep?.Invoke(step + 1, CodeWeight * code + probes);
            }
        }
        finally
        {
            foreach (var p in _model.Parameters.All) p.Trainable = false;
            foreach (var p in trainable) p.Trainable = true;
        }
    }

    /// <summary>Probe accuracy on <paramref name="images"/> images of a split from <paramref name="first"/> on.</summary>
    public VisionProbeAccuracy Evaluate(int images, Split split = Split.Test, long first = 0)
    {
        using var arena = new Arena(_model.Backend, 256L << 20);
        var tape = new Tape(_model.Backend, arena, record: false);
        // The three probes, then colour and shape again on held-out-combination objects only.
        var accuracy = new (int Correct, int Scored)[HeadSizes.Length + 2];
        double codeError = Loss(tape, split, first, images, accuracy).Code;
        return new VisionProbeAccuracy(Ratio(accuracy[0]), Ratio(accuracy[1]), Ratio(accuracy[2]), accuracy[1].Scored, accuracy[2].Scored,
                                       Ratio(accuracy[3]), Ratio(accuracy[4]), accuracy[4].Scored, codeError);
    }

    /// <summary>
    /// Each patch's probe argmax — colour (6 = no object), shape (4 = no object), background — for images
    /// [first, first + count) of a split as drawn: [count·N, 3] bytes, the labels' layout of the patch ground truth.
    /// </summary>
    public byte[] Codes(Split split, long first, int count)
    {
        var v = _model.Config.Vision;
        var world = _recipe.World;
        var codes = new byte[count * v.NumPatches * HeadSizes.Length];
        using var arena = new Arena(_model.Backend, 256L << 20);
        const int Chunk = 64;
        for (int start = 0; start < count; start += Chunk)
        {
            arena.Reset();
            var tape = new Tape(_model.Backend, arena, record: false);
            int n = Math.Min(Chunk, count - start);
            var pixels = Enumerable.Range(start, n).SelectMany(i => _recipe.Pixels(world.Render(world.SceneAt(split, first + i)))).ToArray();
            var logits = ProbeLogits(tape, pixels, n);
            for (int h = 0; h < HeadSizes.Length; h++)
            {
                var host = logits[h].ToArray();
                for (int row = 0; row < n * v.NumPatches; row++)
                    codes[((long)start * v.NumPatches + row) * HeadSizes.Length + h] = (byte)Decision(host, row, h);
            }
        }
        return codes;
    }

    // The three probes' logits [count·N, K_h] on the tower's patch features of count preprocessed images.
    private Tensor[] ProbeLogits(Tape tape, float[] pixels, int count) => ProbeLogits(tape, Features(tape, pixels, count));

    private Tensor Features(Tape tape, float[] pixels, int count)
    {
        var v = _model.Config.Vision;
        return _model.Vision.Forward(tape, Ops.Input(tape, pixels, count, v.NumChannels, v.ImageSize, v.ImageSize));
    }

    private Tensor[] ProbeLogits(Tape tape, Tensor features) =>
        Enumerable.Range(0, HeadSizes.Length).Select(h => Ops.Linear(tape, features, _heads[2 * h].Value, _heads[2 * h + 1].Value)).ToArray();

    // Probe h's class for one patch row of its host logits.
    private static int Decision(float[] logits, int row, int h) => HostMath.ArgMax(logits.AsSpan(row * HeadSizes[h], HeadSizes[h]));

    private static double Ratio((int Correct, int Scored) a) => (double)a.Correct / Math.Max(1, a.Scored);

    // The code regression's mean squared error and the mean of the three probes' cross-entropies over the patches of
    // images [first, first + count) of a split; with accuracy given, each probe's (correct, scored) counts are added to
    // it (a read-back the training steps skip), and the colour and shape probes' counts on held-out-combination objects
    // to its entries 3 and 4.
    private (double Code, double Probes) Loss(Tape tape, Split split, long first, int count, (int Correct, int Scored)[]? accuracy)
    {
        var world = _recipe.World;
        var v = _model.Config.Vision;
        int grid = world.Options.Grid, np = grid * grid, per = v.NumChannels * v.ImageSize * v.ImageSize;
        if (np != v.NumPatches || _model.Config.MmVisionSelectFeature != VisionSelectFeature.Patch)
            throw new ArgumentException($"vision pretraining needs one patch per ShapesGrid cell and patch features (grid {grid}², tower {v.NumPatches} patches)");
        var pixels = new float[count * per];
        var targets = HeadSizes.Select(_ => new int[count * np]).ToArray();
        var heldOut = new bool[count * np];
        int C = v.HiddenSize;
        var code = new float[count * np * C];
        var free = new int[count]; // per image, the block its augmentation leaves open (−1: none)
        for (int i = 0; i < count; i++)
        {
            long index = first + i;
            var scene = world.SceneAt(split, index);
            // Train images alternate: as drawn; objects in off-palette colours (shape labels only); palette-coloured
            // blobs (colour labels only). The two augmentations make shape and colour features independent of each other.
            int kind = split == Split.Train ? (int)(index % 3) : 0;
            bool recolour = kind == 1, blob = kind == 2;
            free[i] = recolour ? 0 : blob ? 1 : -1;
            var image = kind == 0 ? world.Render(scene) : ShapesGridRenderer.Render(scene, v.ImageSize, v.PatchSize, Repaint(scene, blob));
            _recipe.Pixels(image).CopyTo(pixels, i * per);
            for (int j = 0; j < np; j++)
            {
                int r = j / grid, c = j % grid, row = i * np + j;
                var o = scene.ObjectAt(r, c);
                targets[0][row] = o is { } oc ? (recolour ? IndexChecks.IgnoreIndex : (int)oc.Colour) : Colours;
                targets[1][row] = o is { } os ? (blob ? IndexChecks.IgnoreIndex : (int)os.Shape) : Shapes;
                targets[2][row] = (int)scene.BackgroundAt(r);
                heldOut[row] = o is { } oh && world.IsHeldOut(oh.Combo);
                for (int h = 0; h < HeadSizes.Length; h++)
                    if (h != free[i]) AddCode(code.AsSpan(row * C, C), h, targets[h][row]);
            }
        }
        var features = Features(tape, pixels, count);
        if (free.Any(b => b >= 0))
        {
            // An unlabelled block's target is the features themselves: no error there, and no gradient.
            var host = features.ToArray();
            for (int row = 0; row < count * np; row++)
            {
                if (free[row / np] < 0) continue;
                var (lo, hi) = Block(free[row / np], C);
                host.AsSpan(row * C + lo, hi - lo).CopyTo(code.AsSpan(row * C + lo, hi - lo));
            }
        }
        var logits = ProbeLogits(tape, features);
        double codeError = Ops.SquaredError(tape, features, Ops.Input(tape, code, count * np, C), CodeWeight).Mean, loss = 0;
        for (int h = 0; h < HeadSizes.Length; h++)
        {
            loss += Ops.CrossEntropy(tape, logits[h], targets[h], 1f / HeadSizes.Length).Mean / HeadSizes.Length;
            if (accuracy is null) continue;
            var host = logits[h].ToArray();
            for (int row = 0; row < targets[h].Length; row++)
            {
                // Colour and shape are scored on object patches only: "no object" there is the easy majority class.
                if (targets[h][row] == IndexChecks.IgnoreIndex || (h < 2 && targets[1][row] == Shapes)) continue;
                bool correct = Decision(host, row, h) == targets[h][row];
                accuracy[h].Scored++;
                if (correct) accuracy[h].Correct++;
                if (h == 2 || !heldOut[row]) continue;
                accuracy[3 + h].Scored++;
                if (correct) accuracy[3 + h].Correct++;
            }
        }
        return (codeError, loss);
    }

    // Head h's third of the C feature dimensions.
    private static (int Lo, int Hi) Block(int h, int c) => (h * c / HeadSizes.Length, (h + 1) * c / HeadSizes.Length);

    // dst += the code of class k of head h.
    private void AddCode(Span<float> dst, int h, int k)
    {
        var src = _codes.AsSpan((CodeRows[h] + k) * dst.Length, dst.Length);
        for (int i = 0; i < dst.Length; i++) dst[i] += src[i];
    }

    // Blobs keep their palette colour. Shapes get their own random colour at least 80 (Euclidean RGB) from each palette
    // colour, so no held-out colour×shape combination is shown, and at least 95 from each background, as the palette is.
    private static Func<GridObject, ObjectPaint?> Repaint(Scene scene, bool blob)
    {
        if (blob) return o => new ObjectPaint(ShapesGridRenderer.Palette[(int)o.Colour], Blob: true);
        var rng = new Rng(scene.Seed ^ RepaintStream);
        var colours = new Dictionary<(int, int), ObjectPaint>();
        foreach (var o in scene.Objects)
        {
            (int, int, int) c;
            do c = (rng.NextInt(256), rng.NextInt(256), rng.NextInt(256));
            while (!FarFrom(c, ShapesGridRenderer.Palette, 80) || !FarFrom(c, ShapesGridRenderer.BackgroundBase, 95));
            colours[(o.Row, o.Column)] = new ObjectPaint(c, Blob: false);
        }
        return o => colours[(o.Row, o.Column)];
    }

    // Keys this stream apart from the scene's own pixel and question streams, which are derived from the same seed.
    private const ulong RepaintStream = 0x5EED_C0105UL;

    private static bool FarFrom((int R, int G, int B) c, IReadOnlyList<(int R, int G, int B)> set, int distance)
    {
        foreach (var p in set)
        {
            int dr = c.R - p.R, dg = c.G - p.G, db = c.B - p.B;
            if (dr * dr + dg * dg + db * db < distance * distance) return false;
        }
        return true;
    }

    public void Dispose()
    {
        foreach (var h in _heads) h.Dispose();
    }
}
