using VwLmm.Core;
using VwLmm.Data.Batching;

namespace VwLmm.Model.Training;

/// <summary>
/// The counterfactual twin loss of <see cref="StageConfig.TwinWeight"/> (logit pairing; Garg et al. 2019, "Counterfactual
/// Fairness in Text Classification through Robustness"): for pairs of logit rows (a, b), β · mean over the pairs of
/// Σ_w (z_a − z_b)_w², z = logits · S, where S [V, C] takes the words of the given classes, each centred within its
/// class — adding a constant to a class's logits changes no choice among its words, so it is not penalised. A twin
/// changes what an answer must not depend on (the asked object's other attribute); the loss asks the model to answer
/// the two alike, which a model that leans on that attribute does not.
/// </summary>
public sealed class TwinLoss
{
    private readonly float[] _selection;

    /// <param name="classes">Token ids of each class's words; a word in two classes counts in both.</param>
    public TwinLoss(int vocab, IReadOnlyList<IReadOnlyList<int>> classes)
    {
        Vocab = vocab;
        Columns = classes.Sum(c => c.Count);
        _selection = new float[vocab * Columns];
        int column = 0;
        foreach (var ids in classes)
        {
            foreach (int id in ids)
                if ((uint)id >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(classes), $"token id {id} is outside the vocabulary of {vocab}");
            for (int j = 0; j < ids.Count; j++)
                for (int i = 0; i < ids.Count; i++)
                    _selection[ids[i] * Columns + column + j] += (i == j ? 1f : 0f) - 1f / ids.Count;
            column += ids.Count;
        }
    }

    public int Vocab { get; }
    /// <summary>C: the words compared, over all classes.</summary>
    public int Columns { get; }

    /// <summary>
    /// logits [R, V], rows host [P] each → the loss (β · mean over the P pairs of the summed squares). A root like
    /// CrossEntropy: when recording, both rows' gradients are added to the logits' now. P = 0 gives 0.
    /// </summary>
    public double Add(Tape tape, Tensor logits, ReadOnlySpan<int> rowsA, ReadOnlySpan<int> rowsB, float weight)
    {
        if (rowsA.Length != rowsB.Length) throw new ArgumentException($"TwinLoss: {rowsA.Length} rows against {rowsB.Length}");
        if (logits.Shape.Rank != 2 || logits.Shape[1] != Vocab) throw new ArgumentException($"TwinLoss: logits are {logits.Shape}, expected [R, {Vocab}]");
        if (rowsA.Length == 0) return 0;
        var s = Ops.Input(tape, _selection, Vocab, Columns);
        var za = Ops.MatMul(tape, Ops.Gather(tape, logits, null, rowsA), s);
        var zb = Ops.MatMul(tape, Ops.Gather(tape, logits, null, rowsB), s);
        // SquaredError is a mean over P·C entries with its gradient into x alone: C·β makes it a sum over the words,
        // and the second call gives the twin's row its half.
        float w = weight * Columns;
        double mean = Ops.SquaredError(tape, za, zb, w).Mean;
        Ops.SquaredError(tape, zb, za, w);
        return weight * Columns * mean;
    }

    /// <summary>The row b·L + t of batch whose target is the first token of sample b's answer number k (0-based: the
    /// k-th run of supervised targets); null when the sample has fewer (max_length cut them).</summary>
    public static int? AnswerRow(Batch batch, int b, int k)
    {
        int run = -1;
        bool inRun = false;
        for (int t = 0; t < batch.L; t++)
        {
            bool on = batch.Targets[b * batch.L + t] >= 0;
            if (on && !inRun && ++run == k) return b * batch.L + t;
            inRun = on;
        }
        return null;
    }
}
