using VwLmm.Data.Conversations;

namespace VwLmm.Data.Batching;

/// <summary>
/// Builds the batch the model consumes from tokenized samples, as LLaVA's prepare_inputs_labels_for_multimodal does:
/// each −200 sentinel becomes <see cref="ImageTokens"/> image positions (label −100, mask 1), samples are truncated to
/// <see cref="MaxLength"/> after this expansion and right-padded to the longest one.
/// Images cut off entirely by truncation get no feature rows; partly cut ones keep all rows (the encoder yields them anyway).
/// The label at a sentinel is ignored, as in LLaVA.
/// </summary>
public sealed class BatchBuilder
{
    public BatchBuilder(int imageTokens, int maxLength, int vocabSize)
    {
        if (imageTokens <= 0) throw new ArgumentException($"imageTokens must be positive, got {imageTokens}", nameof(imageTokens));
        if (maxLength <= 0) throw new ArgumentException($"maxLength must be positive, got {maxLength}", nameof(maxLength));
        if (vocabSize <= 0) throw new ArgumentException($"vocabSize must be positive, got {vocabSize}", nameof(vocabSize));
        ImageTokens = imageTokens;
        MaxLength = maxLength;
        VocabSize = vocabSize;
    }

    public int ImageTokens { get; }
    public int MaxLength { get; }
    public int VocabSize { get; }

    /// <summary>Spliced length of one sample before truncation.</summary>
    public int SplicedLength(TokenizedConversation sample)
    {
        int n = 0;
        foreach (int id in sample.InputIds) n += id == Llava.ImageTokenIndex ? ImageTokens : 1;
        return n;
    }

    /// <summary>B samples (ids [n_b] with −200 sentinels, labels [n_b]) → the batch; see <see cref="Batch"/> for layouts.</summary>
    public Batch Build(IReadOnlyList<TokenizedConversation> samples)
    {
        if (samples.Count == 0) throw new ArgumentException("batch has no samples", nameof(samples));
        int b = samples.Count;
        var keyLengths = new int[b];
        int truncated = 0;
        for (int s = 0; s < b; s++)
        {
            Validate(samples[s], s);
            int spliced = SplicedLength(samples[s]);
            if (spliced > MaxLength) truncated++;
            keyLengths[s] = Math.Min(spliced, MaxLength);
        }
        int l = keyLengths.Max();

        var map = new int[b * l];
        var targets = new int[b * l];
        var mask = new byte[b * l];
        var positions = new int[b * l];
        Array.Fill(map, -1);
        Array.Fill(targets, Llava.IgnoreIndex);
        var images = new List<ImageRef>();
        var pairs = new List<int>();
        var labels = new int[l];
        int textTargets = 0, imageTokens = 0;

        for (int s = 0; s < b; s++)
        {
            var (ids, lab) = (samples[s].InputIds, samples[s].Labels);
            int len = keyLengths[s], row = s * l, t = 0, ordinal = 0;
            for (int i = 0; i < ids.Length && t < len; i++)
            {
                if (ids[i] != Llava.ImageTokenIndex)
                {
                    map[row + t] = ids[i];
                    labels[t++] = lab[i];
                    continue;
                }
                int firstFeature = images.Count * ImageTokens;
                images.Add(new ImageRef(s, ordinal++));
                for (int j = 0; j < ImageTokens && t < len; j++, t++)
                {
                    map[row + t] = -2 - (firstFeature + j);
                    mask[row + t] = 1;
                    labels[t] = Llava.IgnoreIndex;
                    imageTokens++;
                    if (t >= 1)
                    {
                        pairs.Add(row + t - 1);
                        pairs.Add(firstFeature + j);
                    }
                }
            }
            for (t = 0; t < len; t++)
            {
                positions[row + t] = t;
                if (t + 1 < len && labels[t + 1] != Llava.IgnoreIndex)
                {
                    targets[row + t] = labels[t + 1];
                    textTargets++;
                }
            }
        }
        return new Batch(b, l, ImageTokens, map, targets, mask, pairs.ToArray(), positions, keyLengths, images.ToArray(),
                         textTargets, imageTokens, truncated);
    }

    private void Validate(TokenizedConversation sample, int index)
    {
        if (sample.InputIds.Length == 0) throw new ArgumentException($"sample {index} has no tokens", nameof(sample));
        if (sample.Labels.Length != sample.InputIds.Length)
            throw new ArgumentException($"sample {index}: {sample.InputIds.Length} ids but {sample.Labels.Length} labels", nameof(sample));
        for (int i = 0; i < sample.InputIds.Length; i++)
        {
            int id = sample.InputIds[i], label = sample.Labels[i];
            if (id != Llava.ImageTokenIndex && (uint)id >= (uint)VocabSize)
                throw new ArgumentException($"sample {index}: token id {id} at {i} outside [0, {VocabSize})", nameof(sample));
            if (id != Llava.ImageTokenIndex && label != Llava.IgnoreIndex && (uint)label >= (uint)VocabSize)
                throw new ArgumentException($"sample {index}: label {label} at {i} is neither −100 nor in [0, {VocabSize})", nameof(sample));
        }
    }
}
