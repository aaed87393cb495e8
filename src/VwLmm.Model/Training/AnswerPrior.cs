using VwLmm.Data.Batching;

namespace VwLmm.Model.Training;

/// <summary>
/// A frame-relative answer prior for product-of-experts training (Clark et al. 2019, "Don't Take the Easy Way Out").
/// Counted on a stage's training data, it holds for each answer context — the prompt since the previous answer plus
/// the answer so far — the log ratio log P(a | context) − log P(a | frame), where the frame is the context with every
/// word of a class (colours, shapes, …) replaced by its class. Added to the logits while training only, it carries what
/// the named words alone say about the answer ("triangles were never blue"), so the model is not pushed to learn it;
/// at test time, without the prior, the answer has to come from the image. Answers the frame never had keep bias 0,
/// so the model still learns what kind of word answers each kind of question. Meant for short answers (QA): a long
/// caption makes every context unique.
/// </summary>
public sealed class AnswerPrior
{
    /// <summary>Pseudo-count of the frame's distribution in each context's estimate (add-β smoothing towards the frame).</summary>
    public const double Smoothing = 1.0;

    private readonly Dictionary<ulong, int> _rows;
    private readonly float[] _table;
    private int[] _map = [];
    private ulong[] _keys = [], _frames = [];

    private AnswerPrior(int vocab, Dictionary<ulong, int> rows, float[] table)
    {
        Vocab = vocab;
        _rows = rows;
        _table = table;
    }

    public int Vocab { get; }
    /// <summary>Contexts with a non-zero bias (the table's rows).</summary>
    public int Contexts => _rows.Count;
    /// <summary>[Contexts, Vocab] log-ratio biases, one row per context.</summary>
    public ReadOnlySpan<float> Table => _table;

    /// <summary>
    /// Counts batches' supervised targets by context and frame. classOf maps a token id to its class (≥ 0); tokens
    /// without a class stand for themselves. Contexts without a class word equal their frame and get no row.
    /// </summary>
    public static AnswerPrior Count(IEnumerable<Batch> batches, IReadOnlyDictionary<int, int> classOf, int vocab)
    {
        var byContext = new Dictionary<ulong, (ulong frame, Dictionary<int, int> counts)>();
        var byFrame = new Dictionary<ulong, Dictionary<int, int>>();
        ulong[] keys = [], frames = [];
        foreach (var batch in batches)
        {
            Hash(batch, classOf, ref keys, ref frames);
            for (int r = 0; r < batch.B * batch.L; r++)
            {
                if (keys[r] == frames[r]) continue;
                int a = batch.Targets[r];
                if (!byContext.TryGetValue(keys[r], out var ctx)) byContext[keys[r]] = ctx = (frames[r], new Dictionary<int, int>());
                Increment(ctx.counts, a);
                if (!byFrame.TryGetValue(frames[r], out var f)) byFrame[frames[r]] = f = new Dictionary<int, int>();
                Increment(f, a);
            }
        }

        // Rows in key order: the table does not depend on dictionary iteration order.
        var ordered = byContext.Keys.Order().ToArray();
        var rows = new Dictionary<ulong, int>(ordered.Length);
        var table = new float[ordered.Length * vocab];
        for (int i = 0; i < ordered.Length; i++)
        {
            rows[ordered[i]] = i;
            var (frame, counts) = byContext[ordered[i]];
            var frameCounts = byFrame[frame];
            double n = counts.Values.Sum(), nFrame = frameCounts.Values.Sum();
            foreach (var (a, c) in frameCounts)
            {
                double pFrame = c / nFrame;
                double pContext = (counts.GetValueOrDefault(a) + Smoothing * pFrame) / (n + Smoothing);
                table[i * vocab + a] = (float)Math.Log(pContext / pFrame);
            }
        }
        return new AnswerPrior(vocab, rows, table);
    }

    /// <summary>
    /// [B·L] table row for each batch row (−1: no bias), or [R] for the rows of <see cref="Batch.LossRows"/> when
    /// <paramref name="lossRowsOnly"/>, for Ops.Gather over <see cref="Table"/>. Reuses its buffer.
    /// </summary>
    public ReadOnlySpan<int> RowMap(Batch batch, bool lossRowsOnly = false)
    {
        int n = batch.B * batch.L;
        if (_map.Length < n) _map = new int[n];
        Hash(batch, EmptyClasses, ref _keys, ref _frames);
        for (int r = 0; r < n; r++) _map[r] = batch.Targets[r] >= 0 && _rows.TryGetValue(_keys[r], out int row) ? row : -1;
        if (!lossRowsOnly) return _map.AsSpan(0, n);
        // In place: the i-th loss row is row i or later.
        var rows = batch.LossRows;
        for (int i = 0; i < rows.Length; i++) _map[i] = _map[rows[i]];
        return _map.AsSpan(0, rows.Length);
    }

    private static readonly Dictionary<int, int> EmptyClasses = [];

    private static void Increment(Dictionary<int, int> counts, int a) => counts[a] = counts.GetValueOrDefault(a) + 1;

    /// <summary>
    /// Context and frame hashes of every row whose target is supervised (0 elsewhere). A context starts after the last
    /// supervised token of the previous answer (or at the sample's start) and runs to the row itself; image rows are
    /// left out, so a question's context does not depend on the image or on earlier turns.
    /// </summary>
    private static void Hash(Batch batch, IReadOnlyDictionary<int, int> classOf, ref ulong[] keys, ref ulong[] frames)
    {
        int l = batch.L, n = batch.B * l;
        if (keys.Length < n)
        {
            keys = new ulong[n];
            frames = new ulong[n];
        }
        for (int b = 0; b < batch.B; b++)
        {
            ulong key = Offset, frame = Offset;
            for (int t = 0; t < l; t++)
            {
                int r = b * l + t, token = batch.Map[r];
                keys[r] = frames[r] = 0;
                if (token == -1) continue;
                if (token >= 0)
                {
                    key = Mix(key, token);
                    frame = Mix(frame, classOf.TryGetValue(token, out int c) ? -1 - c : token);
                }
                if (batch.Targets[r] >= 0)
                {
                    keys[r] = key;
                    frames[r] = frame;
                }
                else if (t > 0 && batch.Targets[r - 1] >= 0)
                {
                    key = frame = Offset;
                }
            }
        }
    }

    private const ulong Offset = 14695981039346656037UL;

    // FNV-1a over each token's four bytes: a few thousand contexts in 64 bits do not collide in practice.
    private static ulong Mix(ulong h, int token)
    {
        for (int i = 0; i < 4; i++) h = (h ^ (byte)(token >> (8 * i))) * 1099511628211UL;
        return h;
    }
}
