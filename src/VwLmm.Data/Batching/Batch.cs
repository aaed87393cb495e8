namespace VwLmm.Data.Batching;

/// <summary>Where an image of the batch comes from: sample <paramref name="Sample"/>, its <paramref name="Ordinal"/>-th image.</summary>
public readonly record struct ImageRef(int Sample, int Ordinal);

/// <summary>
/// One spliced, right-padded micro-batch (METHOD §1.5, §2.3). All [B·L] arrays are row-major: index b·L + t.
/// Image feature rows are numbered globally: image i occupies rows i·ImageTokens … i·ImageTokens + ImageTokens − 1.
/// </summary>
public sealed class Batch
{
    internal Batch(int b, int l, int imageTokens, int[] map, int[] targets, byte[] imageMask, int[] vmPairs, int[] positions,
                   int[] keyLengths, ImageRef[] images, int textTargetCount, int imageTokenCount, int truncatedCount)
    {
        B = b;
        L = l;
        ImageTokens = imageTokens;
        Map = map;
        Targets = targets;
        ImageMask = imageMask;
        VmPairs = vmPairs;
        Positions = positions;
        KeyLengths = keyLengths;
        Images = images;
        TextTargetCount = textTargetCount;
        ImageTokenCount = imageTokenCount;
        TruncatedCount = truncatedCount;
        (LossRows, LossTargets, LossVmPairs) = Compact(b * l, targets, vmPairs);
    }

    // Row r is read by a loss when its target is supervised or a VM pair scores its logits; LossRows lists those rows
    // in order, and the compacted arrays address them by place in that list.
    private static (int[], int[], int[]) Compact(int n, int[] targets, int[] vmPairs)
    {
        var place = new int[n];
        for (int p = 0; p < vmPairs.Length; p += 2) place[vmPairs[p]] = 1;
        int count = 0;
        for (int r = 0; r < n; r++)
            if (targets[r] >= 0 || place[r] != 0) place[r] = ++count;
        // With nothing supervised, row 0 stands in, so that the logits a loss reads are never an empty tensor.
        if (count == 0) place[0] = count = 1;
        var rows = new int[count];
        var compactTargets = new int[count];
        for (int r = 0; r < n; r++)
            if (place[r] != 0)
            {
                rows[place[r] - 1] = r;
                compactTargets[place[r] - 1] = targets[r];
            }
        var pairs = (int[])vmPairs.Clone();
        for (int p = 0; p < pairs.Length; p += 2) pairs[p] = place[pairs[p]] - 1;
        return (rows, compactTargets, pairs);
    }

    /// <summary>The place of batch row <paramref name="row"/> (b·L + t) in <see cref="LossRows"/>, or −1 when no loss reads it.</summary>
    public int LossRowOf(int row) => Math.Max(-1, Array.BinarySearch(LossRows, row));

    public int B { get; }
    /// <summary>Padded length: the longest spliced (and truncated) sample.</summary>
    public int L { get; }
    /// <summary>N_img: feature rows per image.</summary>
    public int ImageTokens { get; }
    /// <summary>[B·L] input source: ≥ 0 token id, ≤ −2 image feature row (−2 − row), −1 padding.</summary>
    public int[] Map { get; }
    /// <summary>[B·L] shifted text labels for cross-entropy at each position (label of t + 1), −100 where no loss.</summary>
    public int[] Targets { get; }
    /// <summary>[B·L] 1 exactly at image positions (M of METHOD §2.1), 0 on text and padding.</summary>
    public byte[] ImageMask { get; }
    /// <summary>[VmPairCount·2] (lmRow = b·L + t − 1, image feature row at (b, t)) for image positions t ≥ 1, row-major in (b, t).</summary>
    public int[] VmPairs { get; }
    public int VmPairCount => VmPairs.Length / 2;
    /// <summary>[B·L] RoPE position t within the sample, 0 on padding.</summary>
    public int[] Positions { get; }
    /// <summary>[B] valid (unpadded) length of each sample.</summary>
    public int[] KeyLengths { get; }
    /// <summary>[ImageCount] origin of each image feature block, in row order.</summary>
    public ImageRef[] Images { get; }
    public int ImageCount => Images.Length;
    /// <summary>
    /// [R] ascending batch rows (b·L + t) that a loss reads: a supervised target or the LM side of a VM pair (row 0 alone
    /// when there is none). Training computes the last layer's output, the final norm and the LM head on these rows
    /// only (<see cref="LossTargets"/>, <see cref="LossVmPairs"/> address them).
    /// </summary>
    public int[] LossRows { get; }
    /// <summary>[R] <see cref="Targets"/> at <see cref="LossRows"/>.</summary>
    public int[] LossTargets { get; }
    /// <summary>[VmPairCount·2] <see cref="VmPairs"/> with each LM row given as its place in <see cref="LossRows"/>.</summary>
    public int[] LossVmPairs { get; }
    /// <summary>Number of Targets ≥ 0 (the cross-entropy mean's denominator).</summary>
    public int TextTargetCount { get; }
    /// <summary>Number of image positions kept in the batch.</summary>
    public int ImageTokenCount { get; }
    /// <summary>Number of samples longer than the builder's MaxLength once spliced, and so cut.</summary>
    public int TruncatedCount { get; }
}
