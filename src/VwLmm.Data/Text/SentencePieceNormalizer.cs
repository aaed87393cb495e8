using System.Buffers.Binary;
using System.Text;

namespace VwLmm.Data.Text;

/// <summary>
/// sentencepiece's Normalizer (normalizer.cc): user-defined symbols pass through untouched, the precompiled charsmap
/// (when there is one: nmt_nfkc, nfkc, custom rules) rewrites the longest matching prefix, then come the dummy
/// prefix, whitespace escaping (' ' → ▁) and extra-whitespace removal. The <c>identity</c> rule has no charsmap.
/// </summary>
internal sealed class SentencePieceNormalizer
{
    public const char SpaceSymbol = '\u2581';

    private readonly Dictionary<char, string[]> _userDefined;
    private readonly bool _addDummyPrefix, _removeExtraWhitespaces;
    private readonly char _space;
    private readonly string _source;
    /// <summary>darts-clone double array of the charsmap; keys are UTF-8 strings, values offsets into <see cref="_replacements"/>.</summary>
    private readonly uint[]? _trie;
    /// <summary>NUL-terminated UTF-8 replacement strings.</summary>
    private readonly byte[] _replacements = [];
    /// <summary>Decoded replacement per offset, filled on first use (racing writers store equal strings).</summary>
    private readonly string?[] _replacementAt = [];

    /// <param name="precompiledCharsmap">normalizer_spec.precompiled_charsmap: u32 LE trie size in bytes, the trie, the replacement strings; empty for identity.</param>
    /// <param name="source">Names the model in error messages.</param>
    public SentencePieceNormalizer(IEnumerable<string> userDefinedSymbols, bool addDummyPrefix, bool removeExtraWhitespaces,
        bool escapeWhitespaces, byte[] precompiledCharsmap, string source)
    {
        _userDefined = userDefinedSymbols.GroupBy(s => s[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(s => s.Length).ToArray());
        _addDummyPrefix = addDummyPrefix;
        _removeExtraWhitespaces = removeExtraWhitespaces;
        _space = escapeWhitespaces ? SpaceSymbol : ' ';
        _source = source;
        if (precompiledCharsmap.Length == 0) return;
        uint trieBytes = precompiledCharsmap.Length > 4 ? BinaryPrimitives.ReadUInt32LittleEndian(precompiledCharsmap) : uint.MaxValue;
        if (trieBytes < 4 || trieBytes >= precompiledCharsmap.Length - 4)
            throw new InvalidDataException($"{source}: normalizer_spec.precompiled_charsmap of {precompiledCharsmap.Length} bytes declares a trie of {(int)trieBytes} bytes");
        _trie = new uint[trieBytes / 4];
        for (int i = 0; i < _trie.Length; i++)
            _trie[i] = BinaryPrimitives.ReadUInt32LittleEndian(precompiledCharsmap.AsSpan(4 + 4 * i));
        _replacements = precompiledCharsmap[(4 + (int)trieBytes)..];
        _replacementAt = new string?[_replacements.Length];
    }

    /// <summary>Length of the longest user-defined symbol starting <paramref name="s"/> (non-empty), or 0.</summary>
    public int MatchUserDefined(ReadOnlySpan<char> s)
    {
        if (_userDefined.Count == 0 || !_userDefined.TryGetValue(s[0], out var candidates)) return 0;
        foreach (string u in candidates)
            if (s.StartsWith(u, StringComparison.Ordinal)) return u.Length;
        return 0;
    }

    /// <summary>Length in chars of the code point starting <paramref name="s"/> (non-empty); an unpaired surrogate counts as one.</summary>
    public static int CodePointLength(ReadOnlySpan<char> s) =>
        s.Length > 1 && char.IsHighSurrogate(s[0]) && char.IsLowSurrogate(s[1]) ? 2 : 1;

    /// <summary>text [n chars] → normalized chars in the first <paramref name="length"/> entries of the result.</summary>
    public char[] Normalize(string text, out int length)
    {
        // The charsmap matches UTF-8; an unpaired surrogate becomes EF BF BD, i.e. the U+FFFD it is normalized to.
        byte[]? utf8 = _trie is null ? null : Encoding.UTF8.GetBytes(text);
        var output = new char[text.Length + 1];
        int o = 0, i = 0, b = 0;
        ReadOnlySpan<char> piece;
        if (_removeExtraWhitespaces)
            while (i < text.Length)
            {
                int consumed = NormalizePrefix(text, i, utf8, b, out piece, out int bytes);
                if (piece is not " ") break;
                i += consumed;
                b += bytes;
            }
        if (i == text.Length)
        {
            length = 0;
            return output;
        }
        if (_addDummyPrefix) output[o++] = _space;
        bool prevIsSpace = _removeExtraWhitespaces;
        while (i < text.Length)
        {
            int consumed = NormalizePrefix(text, i, utf8, b, out piece, out int bytes);
            if (prevIsSpace) piece = piece.TrimStart(' ');
            if (!piece.IsEmpty)
            {
                if (o + piece.Length > output.Length) Array.Resize(ref output, Math.Max(2 * output.Length, o + piece.Length));
                foreach (char c in piece) output[o++] = c == ' ' ? _space : c;
                prevIsSpace = piece[^1] == ' ';
            }
            i += consumed;
            b += bytes;
            if (!_removeExtraWhitespaces) prevIsSpace = false;
        }
        if (_removeExtraWhitespaces)
            while (o > 0 && output[o - 1] == _space) o--;
        length = o;
        return output;
    }

    /// <summary>
    /// Normalizer::NormalizePrefix: the normalized form of the longest rule at text[i..] (UTF-8 offset <paramref name="b"/>);
    /// returns the chars consumed, <paramref name="bytes"/> the UTF-8 bytes consumed (0 without a charsmap).
    /// </summary>
    private int NormalizePrefix(string text, int i, byte[]? utf8, int b, out ReadOnlySpan<char> piece, out int bytes)
    {
        var rest = text.AsSpan(i);
        int consumed = MatchUserDefined(rest);
        if (consumed > 0)
        {
            piece = rest[..consumed];
        }
        else if (utf8 is not null && LongestRule(utf8.AsSpan(b), out bytes, out int value))
        {
            piece = Replacement(value);
            int matched = 0;
            while (matched < bytes && consumed < rest.Length)
            {
                int len = CodePointLength(rest[consumed..]);
                matched += Encoding.UTF8.GetByteCount(rest.Slice(consumed, len));
                consumed += len;
            }
            if (matched != bytes)
                throw new InvalidDataException($"{_source}: normalizer_spec.precompiled_charsmap rule ends inside a UTF-8 character");
            return consumed;
        }
        else
        {
            consumed = CodePointLength(rest);
            // sentencepiece maps malformed UTF-8 to U+FFFD; in a C# string that is an unpaired surrogate.
            piece = consumed == 1 && char.IsSurrogate(rest[0]) ? "\uFFFD" : rest[..consumed];
        }
        bytes = utf8 is null ? 0 : Encoding.UTF8.GetByteCount(rest[..consumed]);
        return consumed;
    }

    /// <summary>darts-clone commonPrefixSearch keeping the longest hit: its key length in bytes and value.</summary>
    private bool LongestRule(ReadOnlySpan<byte> key, out int length, out int value)
    {
        uint[] units = _trie!;
        length = 0;
        value = 0;
        uint Unit(uint pos) => pos < (uint)units.Length ? units[pos]
            : throw new InvalidDataException($"{_source}: normalizer_spec.precompiled_charsmap trie index {pos} is outside its {units.Length} units");
        // A unit holds: bits 0-7 label, bit 8 has-leaf, bit 9 offset-scale flag, bits 10-31 offset; leaves have bit 31.
        static uint Offset(uint unit) => (unit >> 10) << (int)((unit & (1u << 9)) >> 6);
        uint node = Offset(Unit(0));
        for (int i = 0; i < key.Length; i++)
        {
            node ^= key[i];
            uint unit = Unit(node);
            if ((unit & 0x8000_00FFu) != key[i]) break;
            node ^= Offset(unit);
            if ((unit & 0x100u) != 0)
            {
                length = i + 1;
                value = (int)(Unit(node) & 0x7FFF_FFFFu);
            }
        }
        return length > 0;
    }

    private string Replacement(int offset)
    {
        if (offset >= _replacements.Length)
            throw new InvalidDataException($"{_source}: normalizer_spec.precompiled_charsmap value {offset} is outside its {_replacements.Length}-byte string table");
        if (_replacementAt[offset] is { } cached) return cached;
        int end = Array.IndexOf(_replacements, (byte)0, offset);
        if (end < 0) throw new InvalidDataException($"{_source}: normalizer_spec.precompiled_charsmap string at {offset} is not NUL-terminated");
        return _replacementAt[offset] = Encoding.UTF8.GetString(_replacements, offset, end - offset);
    }
}
