using System.Text;
using Google.Protobuf;
using VwLmm.Core;

namespace VwLmm.Data.Text;

/// <summary>SentencePiece piece types, numbered as in sentencepiece_model.proto.</summary>
public enum PieceType
{
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

/// <summary>TrainerSpec.ModelType of sentencepiece_model.proto.</summary>
public enum SentencePieceModelType
{
    Unigram = 1,
    Bpe = 2,
    Word = 3,
    Char = 4,
}

/// <summary>One vocabulary entry; its id is its index in <see cref="SentencePieceModel.Pieces"/>.</summary>
public readonly record struct SentencePiece(string Piece, float Score, PieceType Type);

/// <summary>
/// The parts of a sentencepiece ModelProto (<c>tokenizer.model</c>) the tokenizer uses. Fields absent from the file
/// take the proto2 defaults of sentencepiece_model.proto; fields not listed here are skipped on read and not written.
/// Reading checks only the wire format; <see cref="SentencePieceTokenizer"/> checks the semantics.
/// </summary>
public sealed class SentencePieceModel
{
    public required IReadOnlyList<SentencePiece> Pieces { get; init; }

    // TrainerSpec
    public SentencePieceModelType ModelType { get; init; } = SentencePieceModelType.Unigram;
    public int TrainerVocabSize { get; init; } = 8000;
    public float CharacterCoverage { get; init; } = 0.9995f;
    public bool SplitDigits { get; init; }
    public bool TreatWhitespaceAsSuffix { get; init; }
    public bool ByteFallback { get; init; }
    /// <summary>trainer_spec ids as written by the trainer; the tokenizer finds BOS/EOS/PAD by piece name, as sentencepiece does.</summary>
    public int UnkId { get; init; }
    public int BosId { get; init; } = 1;
    public int EosId { get; init; } = 2;
    public int PadId { get; init; } = -1;
    public string UnkPiece { get; init; } = "<unk>";
    public string BosPiece { get; init; } = "<s>";
    public string EosPiece { get; init; } = "</s>";
    public string PadPiece { get; init; } = "<pad>";
    /// <summary>What Decode prints for an &lt;unk&gt; id.</summary>
    public string UnkSurface { get; init; } = " \u2047 ";

    // NormalizerSpec
    public string NormalizerName { get; init; } = "";
    public byte[] PrecompiledCharsmap { get; init; } = [];
    public bool AddDummyPrefix { get; init; } = true;
    public bool RemoveExtraWhitespaces { get; init; } = true;
    public bool EscapeWhitespaces { get; init; } = true;
    /// <summary>Size of denormalizer_spec.precompiled_charsmap (0 when the model has no denormalizer).</summary>
    public int DenormalizerCharsmapLength { get; init; }

    /// <summary>Reads a ModelProto file; bad wire format → InvalidDataException naming the file, byte offset and field.</summary>
    public static SentencePieceModel Read(string path)
    {
        return Parse(File.ReadAllBytes(InputFile.Existing(path, "sentencepiece model")), path);
    }

    /// <summary>Parses ModelProto bytes; <paramref name="source"/> names them in error messages.</summary>
    public static SentencePieceModel Parse(byte[] data, string source)
    {
        var pieces = new List<SentencePiece>();
        var trainer = new Dictionary<int, object>();
        var normalizer = new Dictionary<int, object>();
        var denormalizer = new Dictionary<int, object>();
        var top = new ProtoReader(data, 0, source, "");
        while (top.Next(out int field))
        {
            switch (field)
            {
                case 1: pieces.Add(ReadPiece(top.Message($"pieces[{pieces.Count}]"))); break;
                case 2: ReadFields(top.Message("trainer_spec"), trainer, TrainerFields); break;
                case 3: ReadFields(top.Message("normalizer_spec"), normalizer, NormalizerFields); break;
                case 5: ReadFields(top.Message("denormalizer_spec"), denormalizer, NormalizerFields); break;
                default: top.Skip(); break;
            }
        }
        // Every protobuf field is optional, so no bytes at all, or other bytes that happen to parse, read as a model of
        // defaults: without this it would be refused for its default model type (Unigram), which misleads.
        if (pieces.Count == 0)
            throw new InvalidDataException(data.Length == 0 ? $"{source}: empty file, not a sentencepiece model" : $"{source}: no pieces: not a sentencepiece model");
        T Get<T>(Dictionary<int, object> d, int f, T fallback) => d.TryGetValue(f, out var v) ? (T)v : fallback;
        return new SentencePieceModel
        {
            Pieces = pieces,
            ModelType = (SentencePieceModelType)Get(trainer, 3, 1),
            TrainerVocabSize = Get(trainer, 4, 8000),
            CharacterCoverage = Get(trainer, 10, 0.9995f),
            SplitDigits = Get(trainer, 25, false),
            TreatWhitespaceAsSuffix = Get(trainer, 24, false),
            ByteFallback = Get(trainer, 35, false),
            UnkId = Get(trainer, 40, 0),
            BosId = Get(trainer, 41, 1),
            EosId = Get(trainer, 42, 2),
            PadId = Get(trainer, 43, -1),
            UnkSurface = Get(trainer, 44, " \u2047 "),
            UnkPiece = Get(trainer, 45, "<unk>"),
            BosPiece = Get(trainer, 46, "<s>"),
            EosPiece = Get(trainer, 47, "</s>"),
            PadPiece = Get(trainer, 48, "<pad>"),
            NormalizerName = Get(normalizer, 1, ""),
            PrecompiledCharsmap = Get(normalizer, 2, Array.Empty<byte>()),
            AddDummyPrefix = Get(normalizer, 3, true),
            RemoveExtraWhitespaces = Get(normalizer, 4, true),
            EscapeWhitespaces = Get(normalizer, 5, true),
            DenormalizerCharsmapLength = Get(denormalizer, 2, Array.Empty<byte>()).Length,
        };
    }

    /// <summary>Serialises this model as a ModelProto that python sentencepiece loads.</summary>
    public byte[] ToBytes()
    {
        using var ms = new MemoryStream();
        var o = new CodedOutputStream(ms);
        foreach (var p in Pieces)
            WriteMessage(o, 1, m =>
            {
                m.WriteTag(1, WireFormat.WireType.LengthDelimited); m.WriteString(p.Piece);
                m.WriteTag(2, WireFormat.WireType.Fixed32); m.WriteFloat(p.Score);
                m.WriteTag(3, WireFormat.WireType.Varint); m.WriteEnum((int)p.Type);
            });
        WriteMessage(o, 2, m =>
        {
            WriteVarint(m, 3, (int)ModelType);
            WriteVarint(m, 4, TrainerVocabSize);
            m.WriteTag(10, WireFormat.WireType.Fixed32); m.WriteFloat(CharacterCoverage);
            WriteVarint(m, 24, TreatWhitespaceAsSuffix ? 1 : 0);
            WriteVarint(m, 25, SplitDigits ? 1 : 0);
            WriteVarint(m, 35, ByteFallback ? 1 : 0);
            WriteVarint(m, 40, UnkId);
            WriteVarint(m, 41, BosId);
            WriteVarint(m, 42, EosId);
            WriteVarint(m, 43, PadId);
            WriteString(m, 44, UnkSurface);
            WriteString(m, 45, UnkPiece);
            WriteString(m, 46, BosPiece);
            WriteString(m, 47, EosPiece);
            WriteString(m, 48, PadPiece);
        });
        WriteMessage(o, 3, m =>
        {
            WriteString(m, 1, NormalizerName);
            if (PrecompiledCharsmap.Length > 0)
            {
                m.WriteTag(2, WireFormat.WireType.LengthDelimited); m.WriteBytes(ByteString.CopyFrom(PrecompiledCharsmap));
            }
            WriteVarint(m, 3, AddDummyPrefix ? 1 : 0);
            WriteVarint(m, 4, RemoveExtraWhitespaces ? 1 : 0);
            WriteVarint(m, 5, EscapeWhitespaces ? 1 : 0);
        });
        o.Flush();
        return ms.ToArray();
    }

    /// <summary>Writes <see cref="ToBytes"/> to <paramref name="path"/> through a temp file and a rename.</summary>
    public void Write(string path)
    {
        string tmp = path + ".tmp" + Environment.ProcessId;
        try
        {
            File.WriteAllBytes(tmp, ToBytes());
            File.Move(tmp, path, overwrite: true);
        }
        finally
        {
            File.Delete(tmp);
        }
    }

    private static void WriteVarint(CodedOutputStream o, int field, int value)
    {
        o.WriteTag(field, WireFormat.WireType.Varint);
        o.WriteInt32(value);
    }

    private static void WriteString(CodedOutputStream o, int field, string value)
    {
        o.WriteTag(field, WireFormat.WireType.LengthDelimited);
        o.WriteString(value);
    }

    private static void WriteMessage(CodedOutputStream o, int field, Action<CodedOutputStream> body)
    {
        using var ms = new MemoryStream();
        var m = new CodedOutputStream(ms);
        body(m);
        m.Flush();
        o.WriteTag(field, WireFormat.WireType.LengthDelimited);
        o.WriteBytes(ByteString.CopyFrom(ms.GetBuffer(), 0, (int)ms.Length));
    }

    private enum Kind { Int32, Bool, Float, String, Bytes }

    private static readonly Dictionary<int, (string Name, Kind Kind)> TrainerFields = new()
    {
        [3] = ("model_type", Kind.Int32), [4] = ("vocab_size", Kind.Int32), [10] = ("character_coverage", Kind.Float),
        [24] = ("treat_whitespace_as_suffix", Kind.Bool), [25] = ("split_digits", Kind.Bool),
        [35] = ("byte_fallback", Kind.Bool), [40] = ("unk_id", Kind.Int32), [41] = ("bos_id", Kind.Int32),
        [42] = ("eos_id", Kind.Int32), [43] = ("pad_id", Kind.Int32), [44] = ("unk_surface", Kind.String),
        [45] = ("unk_piece", Kind.String), [46] = ("bos_piece", Kind.String), [47] = ("eos_piece", Kind.String),
        [48] = ("pad_piece", Kind.String),
    };

    private static readonly Dictionary<int, (string Name, Kind Kind)> NormalizerFields = new()
    {
        [1] = ("name", Kind.String), [2] = ("precompiled_charsmap", Kind.Bytes), [3] = ("add_dummy_prefix", Kind.Bool),
        [4] = ("remove_extra_whitespaces", Kind.Bool), [5] = ("escape_whitespaces", Kind.Bool),
    };

    private static SentencePiece ReadPiece(ProtoReader r)
    {
        string piece = "";
        float score = 0;
        int type = (int)PieceType.Normal;
        while (r.Next(out int field))
        {
            switch (field)
            {
                case 1: piece = r.String("piece"); break;
                case 2: score = r.Float("score"); break;
                case 3: type = r.Int32("type"); break;
                default: r.Skip(); break;
            }
        }
        return new SentencePiece(piece, score, (PieceType)type);
    }

    private static void ReadFields(ProtoReader r, Dictionary<int, object> into, Dictionary<int, (string Name, Kind Kind)> known)
    {
        while (r.Next(out int field))
        {
            if (!known.TryGetValue(field, out var f)) { r.Skip(); continue; }
            into[field] = f.Kind switch
            {
                Kind.Int32 => r.Int32(f.Name),
                Kind.Bool => r.Bool(f.Name),
                Kind.Float => r.Float(f.Name),
                Kind.String => r.String(f.Name),
                _ => r.Bytes(f.Name),
            };
        }
    }

    /// <summary>
    /// A CodedInputStream over one message that turns every protobuf failure into an InvalidDataException naming the
    /// file, the absolute byte offset and the field path.
    /// </summary>
    private sealed class ProtoReader(byte[] data, long baseOffset, string source, string path)
    {
        private static readonly UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: true);
        private readonly CodedInputStream _in = new(data);
        private readonly long _end = baseOffset + data.Length;
        private uint _tag;
        private long _tagOffset;

        public bool Next(out int field)
        {
            _tagOffset = baseOffset + _in.Position;
            _tag = Guard(() => _in.ReadTag(), "tag");
            field = WireFormat.GetTagFieldNumber(_tag);
            return _tag != 0;
        }

        public void Skip() => Guard(() => { _in.SkipLastField(); return 0; }, $"#{WireFormat.GetTagFieldNumber(_tag)}");

        public ProtoReader Message(string name)
        {
            byte[] bytes = Guard(() => _in.ReadBytes(), name, WireFormat.WireType.LengthDelimited).ToByteArray();
            return new ProtoReader(bytes, baseOffset + _in.Position - bytes.Length, source, Join(name));
        }

        public int Int32(string name) => Guard(() => _in.ReadInt32(), name, WireFormat.WireType.Varint);
        public bool Bool(string name) => Guard(() => _in.ReadBool(), name, WireFormat.WireType.Varint);
        public float Float(string name) => Guard(() => _in.ReadFloat(), name, WireFormat.WireType.Fixed32);
        public byte[] Bytes(string name) => Guard(() => _in.ReadBytes(), name, WireFormat.WireType.LengthDelimited).ToByteArray();

        public string String(string name)
        {
            byte[] bytes = Bytes(name);
            try
            {
                return StrictUtf8.GetString(bytes);
            }
            catch (DecoderFallbackException)
            {
                throw new InvalidDataException($"{source}: invalid UTF-8 in field {Join(name)} at byte {_tagOffset}");
            }
        }

        private string Join(string name) => path.Length == 0 ? name : path + "." + name;

        private T Guard<T>(Func<T> read, string name, WireFormat.WireType? expected = null)
        {
            if (expected is { } wt && WireFormat.GetTagWireType(_tag) != wt)
                throw new InvalidDataException(
                    $"{source}: field {Join(name)} at byte {_tagOffset} has wire type {WireFormat.GetTagWireType(_tag)}, expected {wt}");
            try
            {
                return read();
            }
            catch (InvalidProtocolBufferException e)
            {
                // The stream's position after a failed read says nothing useful; where the field began and where its
                // message ends do.
                bool truncated = e.Message.Contains("ended unexpectedly") || e.Message.Contains("truncated");
                throw new InvalidDataException(truncated
                    ? $"{source}: truncated at byte {_end} in field {Join(name)}, which starts at byte {_tagOffset}"
                    : $"{source}: malformed protobuf in field {Join(name)}, which starts at byte {_tagOffset}", e);
            }
        }
    }
}
