using VwLmm.Core;

namespace VwLmm.Data.Text;

/// <summary>Settings of <see cref="BpeTrainer"/>; the defaults are LLaMA's (unk 0, bos 1, eos 2, no pad, byte fallback).</summary>
public sealed record BpeTrainerOptions
{
    public int VocabSize { get; init; } = 8000;
    public bool ByteFallback { get; init; } = true;
    /// <summary>Every ASCII digit is a piece of its own, never merged.</summary>
    public bool SplitDigits { get; init; } = true;
    public IReadOnlyList<string> UserDefinedSymbols { get; init; } = [];
    public int UnkId { get; init; }
    public int BosId { get; init; } = 1;
    public int EosId { get; init; } = 2;
    public int PadId { get; init; } = -1;
    public bool AddDummyPrefix { get; init; } = true;
    public bool RemoveExtraWhitespaces { get; init; }
    /// <summary>Longest merged piece, in UTF-16 chars (sentencepiece's max_sentencepiece_length).</summary>
    public int MaxPieceLength { get; init; } = 16;
    /// <summary>sentencepiece's hard_vocab_limit: when false, a corpus too small for VocabSize yields a smaller vocabulary instead of an error.</summary>
    public bool HardVocabLimit { get; init; } = true;
}

/// <summary>
/// Trains a sentencepiece-compatible BPE model (identity normalizer, character coverage 1.0): corpus lines are
/// normalized as the tokenizer will normalize them, cut into words at ▁ and around digits and user-defined symbols,
/// and the most frequent adjacent pair is merged until the vocabulary is full. Merge rank becomes the piece score, so
/// sentencepiece's encoder (highest score first) replays the merges. The merges are not sentencepiece's own.
/// </summary>
public static class BpeTrainer
{
    /// <summary>Trains on the lines of a UTF-8 text file.</summary>
    public static SentencePieceModel TrainFromFile(string corpusPath, BpeTrainerOptions options)
    {
        return Train(File.ReadLines(InputFile.Existing(corpusPath, "corpus")), options);
    }

    /// <summary>Trains on <paramref name="lines"/>; the model has exactly <c>options.VocabSize</c> pieces.</summary>
    public static SentencePieceModel Train(IEnumerable<string> lines, BpeTrainerOptions options)
    {
        var meta = MetaPieces(options);
        var reservedStrings = new HashSet<string>(meta.Select(p => p.Piece), StringComparer.Ordinal);
        foreach (string u in options.UserDefinedSymbols)
            if (u.Length == 0 || !reservedStrings.Add(u))
                throw new ArgumentException($"user-defined symbol '{u}' is empty or duplicates another piece", nameof(options));

        var normalizer = new SentencePieceNormalizer(options.UserDefinedSymbols, options.AddDummyPrefix, options.RemoveExtraWhitespaces,
            escapeWhitespaces: true, precompiledCharsmap: [], source: "BpeTrainer");
        var wordCounts = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (string line in lines)
            CountWords(normalizer, line, options.SplitDigits, wordCounts);

        // Symbols 0..chars-1 are the characters, most frequent first; merges append new symbols.
        var charCounts = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (word, count) in wordCounts)
            for (int i = 0; i < word.Length;)
            {
                int len = SentencePieceNormalizer.CodePointLength(word.AsSpan(i));
                string c = word.Substring(i, len);
                charCounts[c] = charCounts.GetValueOrDefault(c) + count;
                i += len;
            }
        var symbols = charCounts.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => kv.Key).ToList();
        int chars = symbols.Count;
        reservedStrings.UnionWith(Enumerable.Range(0, options.ByteFallback ? 256 : 0).Select(b => $"<0x{b:X2}>"));
        int fixedPieces = meta.Count + options.UserDefinedSymbols.Count + (options.ByteFallback ? 256 : 0) + chars;
        int merges = options.VocabSize - fixedPieces;
        if (merges < 0)
            throw new ArgumentException($"vocab size {options.VocabSize} is below the {fixedPieces} special, byte and character pieces of this corpus", nameof(options));

        var learned = new Merger(symbols, wordCounts, options.MaxPieceLength, reservedStrings).Learn(merges);
        if (learned.Count < merges && options.HardVocabLimit)
            throw new ArgumentException($"vocab size {options.VocabSize} is too large: the corpus yields only {fixedPieces + learned.Count} pieces", nameof(options));

        var pieces = new List<SentencePiece>(fixedPieces + learned.Count);
        pieces.AddRange(meta);
        pieces.AddRange(options.UserDefinedSymbols.Select(u => new SentencePiece(u, 0, PieceType.UserDefined)));
        if (options.ByteFallback)
            pieces.AddRange(Enumerable.Range(0, 256).Select(b => new SentencePiece($"<0x{b:X2}>", 0, PieceType.Byte)));
        pieces.AddRange(learned.Select((p, rank) => new SentencePiece(p, -rank, PieceType.Normal)));
        pieces.AddRange(symbols.Select((c, rank) => new SentencePiece(c, -(learned.Count + rank), PieceType.Normal)));
        return new SentencePieceModel
        {
            Pieces = pieces,
            ModelType = SentencePieceModelType.Bpe,
            TrainerVocabSize = options.VocabSize,
            CharacterCoverage = 1.0f,
            SplitDigits = options.SplitDigits,
            ByteFallback = options.ByteFallback,
            UnkId = options.UnkId,
            BosId = options.BosId,
            EosId = options.EosId,
            PadId = options.PadId,
            NormalizerName = "identity",
            AddDummyPrefix = options.AddDummyPrefix,
            RemoveExtraWhitespaces = options.RemoveExtraWhitespaces,
            EscapeWhitespaces = true,
        };
    }

    /// <summary>unk/bos/eos/pad pieces in id order; their ids must be distinct and fill 0..k−1 as sentencepiece requires.</summary>
    private static List<SentencePiece> MetaPieces(BpeTrainerOptions o)
    {
        var byId = new SortedDictionary<int, SentencePiece>();
        void Add(int id, string piece, PieceType type, string name)
        {
            if (id < 0 && type != PieceType.Unknown) return;
            if (id < 0 || !byId.TryAdd(id, new SentencePiece(piece, 0, type)))
                throw new ArgumentException($"{name} id {id} is negative or already taken", nameof(o));
        }
        Add(o.UnkId, "<unk>", PieceType.Unknown, "unk");
        Add(o.BosId, "<s>", PieceType.Control, "bos");
        Add(o.EosId, "</s>", PieceType.Control, "eos");
        Add(o.PadId, "<pad>", PieceType.Control, "pad");
        if (byId.Keys.Last() != byId.Count - 1)
            throw new ArgumentException($"special ids {string.Join(",", byId.Keys)} must be 0..{byId.Count - 1}", nameof(o));
        return [.. byId.Values];
    }

    /// <summary>Adds the training words of one line: each starts at ▁; digits and user-defined symbols stand apart (symbols are not counted).</summary>
    private static void CountWords(SentencePieceNormalizer normalizer, string line, bool splitDigits, Dictionary<string, long> counts)
    {
        char[] s = normalizer.Normalize(line, out int length);
        var lookup = counts.GetAlternateLookup<ReadOnlySpan<char>>();
        int start = 0;
        void Flush(int end)
        {
            if (end > start)
            {
                var word = s.AsSpan(start, end - start);
                lookup[word] = lookup.TryGetValue(word, out long c) ? c + 1 : 1;
            }
            start = end;
        }
        for (int i = 0; i < length;)
        {
            int uds = normalizer.MatchUserDefined(s.AsSpan(i, length - i));
            if (uds > 0)
            {
                Flush(i);
                i += uds;
                start = i;
                continue;
            }
            char c = s[i];
            bool digit = splitDigits && char.IsAsciiDigit(c);
            if (c == SentencePieceNormalizer.SpaceSymbol || digit) Flush(i);
            i += SentencePieceNormalizer.CodePointLength(s.AsSpan(i, length - i));
            if (digit) Flush(i);
        }
        Flush(length);
    }

    /// <summary>
    /// Classic BPE over a word-frequency table. Pair counts are kept incrementally; a max-heap with lazy deletion
    /// (an entry is live while its count equals the current one) picks the next merge: highest count, then lowest
    /// symbol ids, so training is deterministic.
    /// </summary>
    private sealed class Merger
    {
        private readonly List<string> _symbols;
        private readonly Dictionary<string, int> _symbolIds;
        private readonly List<int[]> _words = [];
        private readonly List<long> _freqs = [];
        private readonly Dictionary<(int, int), long> _pairCounts = [];
        private readonly Dictionary<(int, int), List<int>> _pairWords = [];
        private readonly PriorityQueue<(int A, int B), (long Count, int A, int B)> _heap =
            new(Comparer<(long Count, int A, int B)>.Create((x, y) =>
                x.Count != y.Count ? y.Count.CompareTo(x.Count) : x.A != y.A ? x.A.CompareTo(y.A) : x.B.CompareTo(y.B)));
        private readonly int _maxLength;
        private readonly HashSet<string> _forbidden;
        /// <summary>Pairs whose merge would be too long or a special piece: counted but never queued again.</summary>
        private readonly HashSet<(int, int)> _banned = [];

        public Merger(List<string> chars, Dictionary<string, long> wordCounts, int maxLength, HashSet<string> forbidden)
        {
            _symbols = [.. chars];
            _symbolIds = chars.Select((c, i) => (c, i)).ToDictionary(t => t.c, t => t.i, StringComparer.Ordinal);
            _maxLength = maxLength;
            _forbidden = forbidden;
            foreach (var (word, freq) in wordCounts.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                var ids = new List<int>();
                for (int i = 0; i < word.Length;)
                {
                    int len = SentencePieceNormalizer.CodePointLength(word.AsSpan(i));
                    ids.Add(_symbolIds[word.Substring(i, len)]);
                    i += len;
                }
                _words.Add([.. ids]);
                _freqs.Add(freq);
            }
            var changed = new HashSet<(int, int)>();
            for (int w = 0; w < _words.Count; w++) AddPairs(w, +1, changed);
            foreach (var p in changed) Push(p);
        }

        /// <summary>Learns up to <paramref name="count"/> new pieces; returns them in merge order.</summary>
        public List<string> Learn(int count)
        {
            var learned = new List<string>(count);
            var seen = new HashSet<int>();
            var changed = new HashSet<(int, int)>();
            while (learned.Count < count && _heap.TryDequeue(out var pair, out var priority))
            {
                if (_pairCounts.GetValueOrDefault(pair) != priority.Count) continue;
                string merged = _symbols[pair.A] + _symbols[pair.B];
                if (merged.Length > _maxLength || _forbidden.Contains(merged))
                {
                    _banned.Add(pair);
                    continue;
                }
                if (!_symbolIds.TryGetValue(merged, out int c))
                {
                    c = _symbols.Count;
                    _symbols.Add(merged);
                    _symbolIds.Add(merged, c);
                    learned.Add(merged);
                }
                seen.Clear();
                changed.Clear();
                var words = _pairWords[pair];
                _pairWords.Remove(pair);
                foreach (int w in words)
                {
                    if (!seen.Add(w)) continue;
                    AddPairs(w, -1, changed);
                    _words[w] = Replace(_words[w], pair.A, pair.B, c);
                    AddPairs(w, +1, changed);
                }
                foreach (var p in changed) Push(p);
            }
            return learned;
        }

        private static int[] Replace(int[] word, int a, int b, int c)
        {
            var result = new List<int>(word.Length);
            for (int i = 0; i < word.Length; i++)
            {
                if (i + 1 < word.Length && word[i] == a && word[i + 1] == b)
                {
                    result.Add(c);
                    i++;
                }
                else result.Add(word[i]);
            }
            return [.. result];
        }

        private void AddPairs(int w, int sign, HashSet<(int, int)> changed)
        {
            int[] word = _words[w];
            for (int i = 0; i + 1 < word.Length; i++)
            {
                var p = (word[i], word[i + 1]);
                long n = _pairCounts.GetValueOrDefault(p) + sign * _freqs[w];
                if (n == 0) _pairCounts.Remove(p);
                else _pairCounts[p] = n;
                changed.Add(p);
                if (sign > 0)
                {
                    if (!_pairWords.TryGetValue(p, out var list)) _pairWords[p] = list = [];
                    list.Add(w);
                }
            }
        }

        private void Push((int A, int B) p)
        {
            if (_pairCounts.TryGetValue(p, out long n) && !_banned.Contains(p)) _heap.Enqueue(p, (n, p.A, p.B));
        }
    }
}
