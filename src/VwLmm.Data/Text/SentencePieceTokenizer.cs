using System.Text;

namespace VwLmm.Data.Text;

/// <summary>
/// SentencePiece BPE tokenizer that reproduces python sentencepiece 0.1.97 (bpe_model.cc, normalizer.cc,
/// sentencepiece_processor.cc): the <c>identity</c> normalizer of LLaMA/Vicuna/Mistral and precompiled charsmaps
/// (nmt_nfkc, nfkc, custom rule TSVs). Models with a denormalizer are rejected. Encode and Decode are thread-safe.
/// </summary>
public sealed class SentencePieceTokenizer : ITokenizer
{
    private static readonly byte[] ReplacementUtf8 = [0xEF, 0xBF, 0xBD];

    private readonly PieceType[] _types;
    private readonly float[] _scores;
    /// <summary>Per piece, a key that orders like −score (ties stay ties).</summary>
    private readonly uint[] _scoreRanks;
    /// <summary>Decode surface of every piece: UTF-8 with ▁ already turned into a space.</summary>
    private readonly byte[][] _surfaces;
    private readonly bool[] _startsWithSpaceSymbol;
    private readonly byte[] _unkSurface;
    /// <summary>Byte value of each BYTE piece id, −1 for other ids.</summary>
    private readonly short[] _byteValue;
    /// <summary>Piece id of each byte value; missing byte pieces fall back to unk as in sentencepiece.</summary>
    private readonly int[] _byteIds = new int[256];
    /// <summary>NORMAL, USER_DEFINED and UNUSED pieces: the only ones BPE merges may produce.</summary>
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _mergeable;
    /// <summary>UNKNOWN, CONTROL and BYTE pieces, looked up first as in ModelInterface::PieceToId.</summary>
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _reserved;
    private readonly SentencePieceNormalizer _normalizer;
    private readonly bool _addDummyPrefix, _removeExtraWhitespaces, _byteFallback;

    public SentencePieceModel Model { get; }
    /// <summary>The file (or name) the model came from, used in error messages.</summary>
    public string Source { get; }
    public int VocabSize => _types.Length;
    public int UnkId { get; }
    public int BosId { get; }
    public int EosId { get; }
    public int PadId { get; }

    /// <summary>Loads and validates a <c>tokenizer.model</c> file.</summary>
    public static SentencePieceTokenizer Load(string path) => new(SentencePieceModel.Read(path), path);

    /// <summary>Validates <paramref name="model"/> like sentencepiece's loader; <paramref name="source"/> names it in errors.</summary>
    public SentencePieceTokenizer(SentencePieceModel model, string source)
    {
        Model = model;
        Source = source;
        if (model.ModelType != SentencePieceModelType.Bpe)
            throw new InvalidDataException($"{source}: trainer_spec.model_type is {model.ModelType}; only BPE sentencepiece models are supported");
        if (model.DenormalizerCharsmapLength > 0)
            throw new InvalidDataException($"{source}: denormalizer_spec has a precompiled charsmap; decoding through a denormalizer is not supported");
        if (model.TreatWhitespaceAsSuffix)
            throw new InvalidDataException($"{source}: trainer_spec.treat_whitespace_as_suffix is not supported");

        int n = model.Pieces.Count;
        _types = new PieceType[n];
        _scores = new float[n];
        _scoreRanks = new uint[n];
        _surfaces = new byte[n][];
        _startsWithSpaceSymbol = new bool[n];
        _byteValue = new short[n];
        var mergeable = new Dictionary<string, int>(n);
        var reserved = new Dictionary<string, int>();
        var userDefined = new List<string>();
        UnkId = -1;
        for (int id = 0; id < n; id++)
        {
            var (piece, score, type) = model.Pieces[id];
            if (piece.Length == 0) throw new InvalidDataException($"{source}: pieces[{id}] is empty");
            if (!Enum.IsDefined(type)) throw new InvalidDataException($"{source}: pieces[{id}] '{piece}' has unknown type {(int)type}");
            bool isMergeable = type is PieceType.Normal or PieceType.UserDefined or PieceType.Unused;
            if (!(isMergeable ? mergeable : reserved).TryAdd(piece, id))
                throw new InvalidDataException($"{source}: pieces[{id}] '{piece}' is already defined");
            _types[id] = type;
            _scores[id] = score;
            _scoreRanks[id] = DescendingKey(score);
            _surfaces[id] = Encoding.UTF8.GetBytes(piece.Replace(SentencePieceNormalizer.SpaceSymbol, ' '));
            _startsWithSpaceSymbol[id] = piece[0] == SentencePieceNormalizer.SpaceSymbol;
            _byteValue[id] = -1;
            switch (type)
            {
                case PieceType.UserDefined:
                    userDefined.Add(piece);
                    break;
                case PieceType.Unknown:
                    if (UnkId >= 0) throw new InvalidDataException($"{source}: pieces[{id}] is a second UNKNOWN piece (first is {UnkId})");
                    UnkId = id;
                    break;
                case PieceType.Byte:
                    if (!model.ByteFallback)
                        throw new InvalidDataException($"{source}: pieces[{id}] is the byte piece '{piece}' but trainer_spec.byte_fallback is false");
                    _byteValue[id] = ParseBytePiece(piece) is { } b ? b
                        : throw new InvalidDataException($"{source}: pieces[{id}] '{piece}' is not a byte piece of the form <0xHH>");
                    break;
            }
        }
        if (UnkId < 0) throw new InvalidDataException($"{source}: the model has no UNKNOWN piece");
        Array.Fill(_byteIds, UnkId);
        for (int id = 0; id < n; id++)
            if (_byteValue[id] >= 0) _byteIds[_byteValue[id]] = id;

        _mergeable = mergeable.GetAlternateLookup<ReadOnlySpan<char>>();
        _reserved = reserved.GetAlternateLookup<ReadOnlySpan<char>>();
        _normalizer = new SentencePieceNormalizer(userDefined, model.AddDummyPrefix, model.RemoveExtraWhitespaces,
            model.EscapeWhitespaces, model.PrecompiledCharsmap, source);
        _unkSurface = Encoding.UTF8.GetBytes(model.UnkSurface);
        _addDummyPrefix = model.AddDummyPrefix;
        _removeExtraWhitespaces = model.RemoveExtraWhitespaces;
        _byteFallback = model.ByteFallback;
        BosId = ControlIdOrNone(model.BosPiece);
        EosId = ControlIdOrNone(model.EosPiece);
        PadId = ControlIdOrNone(model.PadPiece);
    }

    /// <summary>Id of <paramref name="piece"/> (control, byte and unknown pieces included), or −1.</summary>
    public int PieceToId(string piece) =>
        _reserved.TryGetValue(piece, out int id) || _mergeable.TryGetValue(piece, out id) ? id : -1;

    /// <summary>Piece string of <paramref name="id"/> ∈ [0, VocabSize).</summary>
    public string IdToPiece(int id) => Model.Pieces[CheckId(id)].Piece;

    public PieceType GetPieceType(int id) => _types[CheckId(id)];

    public float GetScore(int id) => _scores[CheckId(id)];

    /// <summary>text → ids [L] (L+1 with BOS first when <paramref name="addBos"/>).</summary>
    public int[] Encode(string text, bool addBos = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (addBos && BosId < 0) throw new InvalidOperationException($"{Source}: addBos requested but the model has no BOS control piece '{Model.BosPiece}'");
        var ids = new List<int>(text.Length / 3 + 2);
        if (addBos) ids.Add(BosId);
        char[] normalized = _normalizer.Normalize(text, out int length);
        EncodeNormalized(normalized.AsSpan(0, length), ids);
        return ids.ToArray();
    }

    /// <summary>ids [L] → text; control ids vanish, byte runs are reassembled as UTF-8 (bad bytes → U+FFFD each).</summary>
    public string Decode(ReadOnlySpan<int> ids)
    {
        var text = new List<byte>(ids.Length * 4);
        var bytes = new List<byte>();
        // The dummy-prefix ▁ is stripped from the first piece that starts with one while the output is still empty;
        // with remove_extra_whitespaces every such piece is stripped until some text appears.
        bool atStart = true, strippedPrefix = false;
        foreach (int id in ids)
        {
            CheckId(id);
            if (_byteValue[id] >= 0)
            {
                bytes.Add((byte)_byteValue[id]);
                continue;
            }
            FlushBytes(bytes, text);
            if (strippedPrefix || text.Count > 0) atStart = false;
            strippedPrefix = false;
            switch (_types[id])
            {
                case PieceType.Control:
                    break;
                case PieceType.Unknown:
                    text.AddRange(_unkSurface);
                    break;
                default:
                    bool strip = atStart && _startsWithSpaceSymbol[id] && (_addDummyPrefix || _removeExtraWhitespaces);
                    strippedPrefix = strip && !_removeExtraWhitespaces;
                    text.AddRange(strip ? _surfaces[id].AsSpan(1) : _surfaces[id]);
                    break;
            }
        }
        FlushBytes(bytes, text);
        return Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(text));
    }

    private int ControlIdOrNone(string piece) =>
        _reserved.TryGetValue(piece, out int id) && _types[id] == PieceType.Control ? id : -1;

    private int CheckId(int id) =>
        (uint)id < (uint)_types.Length ? id
            : throw new ArgumentOutOfRangeException(nameof(id), id, $"token id {id} is outside the vocabulary [0, {_types.Length}) of {Source}");

    /// <summary>Maps floats to uints so that a larger float gives a smaller key; −0 and +0 share a key.</summary>
    private static uint DescendingKey(float score)
    {
        uint bits = BitConverter.SingleToUInt32Bits(score == 0 ? 0f : score);
        uint ascending = (bits & 0x8000_0000) == 0 ? bits | 0x8000_0000 : ~bits;
        return ~ascending;
    }

    private static short? ParseBytePiece(string piece) =>
        piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
        && piece.AsSpan(3, 2).IndexOfAnyExcept("0123456789ABCDEF") < 0
            ? Convert.ToInt16(piece.Substring(3, 2), 16) : null;

    private struct Symbol
    {
        public int Prev, Next, Start, Length;
        public bool Frozen;
    }

    /// <summary>bpe_model.cc Model::Encode plus the unknown/byte-fallback handling of PopulateSentencePieceText.</summary>
    private void EncodeNormalized(ReadOnlySpan<char> s, List<int> ids)
    {
        if (s.IsEmpty) return;
        var symbols = new Symbol[s.Length];
        int count = 0;
        for (int pos = 0; pos < s.Length; count++)
        {
            int len = _normalizer.MatchUserDefined(s[pos..]);
            bool frozen = len > 0;
            if (!frozen) len = SentencePieceNormalizer.CodePointLength(s[pos..]);
            symbols[count] = new Symbol { Prev = count - 1, Next = pos + len < s.Length ? count + 1 : -1, Start = pos, Length = len, Frozen = frozen };
            pos += len;
        }

        var agenda = new PriorityQueue<long, ulong>(count);
        // UNUSED pieces may come out of a merge but are split back into the pair last seen forming them.
        Dictionary<int, UnusedSplit>? unusedSplits = null;
        for (int i = 1; i < count; i++) AddPair(s, symbols, i - 1, i, agenda, ref unusedSplits);
        while (agenda.TryDequeue(out long pair, out ulong order))
        {
            int leftIndex = (int)(uint)order, rightIndex = (int)(pair >> 32), length = (int)(uint)pair;
            ref var left = ref symbols[leftIndex];
            ref var right = ref symbols[rightIndex];
            // Stale entry: one side was merged away or grew since the pair was queued.
            if (left.Length == 0 || right.Length == 0 || left.Length + right.Length != length) continue;
            left.Length = length;
            left.Next = right.Next;
            if (right.Next >= 0) symbols[right.Next].Prev = leftIndex;
            right.Length = 0;
            AddPair(s, symbols, left.Prev, leftIndex, agenda, ref unusedSplits);
            AddPair(s, symbols, leftIndex, left.Next, agenda, ref unusedSplits);
        }

        bool prevIsUnk = false;
        for (int i = 0; i >= 0; i = symbols[i].Next)
            Emit(s, symbols[i].Start, symbols[i].Length, unusedSplits, ids, ref prevIsUnk);
    }

    private readonly record struct UnusedSplit(int LeftStart, int LeftLength, int RightStart, int RightLength);

    private void AddPair(ReadOnlySpan<char> s, Symbol[] symbols, int left, int right,
        PriorityQueue<long, ulong> agenda, ref Dictionary<int, UnusedSplit>? unusedSplits)
    {
        if (left < 0 || right < 0 || symbols[left].Frozen || symbols[right].Frozen) return;
        ref var l = ref symbols[left];
        ref var r = ref symbols[right];
        int length = l.Length + r.Length;
        if (!_mergeable.TryGetValue(s.Slice(l.Start, length), out int id)) return;
        // Min-heap order (rank of −score, left) is bpe_model.cc's agenda order: highest score first, then leftmost.
        agenda.Enqueue(((long)right << 32) | (uint)length, ((ulong)_scoreRanks[id] << 32) | (uint)left);
        if (_types[id] == PieceType.Unused)
            (unusedSplits ??= [])[id] = new UnusedSplit(l.Start, l.Length, r.Start, r.Length);
    }

    private void Emit(ReadOnlySpan<char> s, int start, int length, Dictionary<int, UnusedSplit>? unusedSplits,
        List<int> ids, ref bool prevIsUnk)
    {
        var piece = s.Slice(start, length);
        int id = _reserved.TryGetValue(piece, out int r) ? r : _mergeable.TryGetValue(piece, out int m) ? m : UnkId;
        if (_types[id] == PieceType.Unused && unusedSplits is not null && unusedSplits.TryGetValue(id, out var split))
        {
            Emit(s, split.LeftStart, split.LeftLength, unusedSplits, ids, ref prevIsUnk);
            Emit(s, split.RightStart, split.RightLength, unusedSplits, ids, ref prevIsUnk);
            return;
        }
        bool isUnk = id == UnkId;
        if (_types[id] == PieceType.Control)
            ids.Add(id);
        else if (isUnk && _byteFallback)
        {
            Span<byte> utf8 = stackalloc byte[Encoding.UTF8.GetMaxByteCount(piece.Length)];
            foreach (byte b in utf8[..Encoding.UTF8.GetBytes(piece, utf8)]) ids.Add(_byteIds[b]);
        }
        else if (!(isUnk && prevIsUnk))
            ids.Add(id);  // a run of unknown pieces becomes one <unk>, as sentencepiece merges them
        prevIsUnk = isUnk;
    }

    /// <summary>Appends pending byte-piece values to <paramref name="text"/>, one U+FFFD per byte that starts no valid UTF-8 character.</summary>
    private static void FlushBytes(List<byte> bytes, List<byte> text)
    {
        var b = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes);
        for (int i = 0; i < b.Length;)
        {
            int len = ValidUtf8Length(b[i..]);
            if (len == 0)
            {
                text.AddRange(ReplacementUtf8);
                i++;
            }
            else
            {
                text.AddRange(b.Slice(i, len));
                i += len;
            }
        }
        bytes.Clear();
    }

    /// <summary>string_util::DecodeUTF8: length of the well-formed UTF-8 character at the start of <paramref name="b"/>, else 0.</summary>
    private static int ValidUtf8Length(ReadOnlySpan<byte> b)
    {
        static bool Trail(byte x) => (x & 0xC0) == 0x80;
        static bool Valid(int cp) => cp < 0xD800 || (cp >= 0xE000 && cp <= 0x10FFFF);
        byte c = b[0];
        if (c < 0x80) return 1;
        if (b.Length >= 2 && (c & 0xE0) == 0xC0 && Trail(b[1]))
        {
            int cp = ((c & 0x1F) << 6) | (b[1] & 0x3F);
            return cp >= 0x80 ? 2 : 0;
        }
        if (b.Length >= 3 && (c & 0xF0) == 0xE0 && Trail(b[1]) && Trail(b[2]))
        {
            int cp = ((c & 0x0F) << 12) | ((b[1] & 0x3F) << 6) | (b[2] & 0x3F);
            return cp >= 0x800 && Valid(cp) ? 3 : 0;
        }
        if (b.Length >= 4 && (c & 0xF8) == 0xF0 && Trail(b[1]) && Trail(b[2]) && Trail(b[3]))
        {
            int cp = ((c & 0x07) << 18) | ((b[1] & 0x3F) << 12) | ((b[2] & 0x3F) << 6) | (b[3] & 0x3F);
            return cp >= 0x10000 && Valid(cp) ? 4 : 0;
        }
        return 0;
    }
}
