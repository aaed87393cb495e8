namespace VwLmm.Data.Text;

/// <summary>
/// sentencepiece's Normalizer (normalizer.cc) for the <c>identity</c> rule: no charsmap, only the dummy prefix,
/// whitespace escaping (' ' → ▁) and extra-whitespace removal. User-defined symbols are matched greedily (longest
/// first) by the same PrefixMatcher the BPE model uses to freeze them.
/// </summary>
internal sealed class IdentityNormalizer
{
    public const char SpaceSymbol = '\u2581';

    private readonly Dictionary<char, string[]> _userDefined;
    private readonly bool _addDummyPrefix, _removeExtraWhitespaces;
    private readonly char _space;

    public IdentityNormalizer(IEnumerable<string> userDefinedSymbols, bool addDummyPrefix, bool removeExtraWhitespaces, bool escapeWhitespaces)
    {
        _userDefined = userDefinedSymbols.GroupBy(s => s[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(s => s.Length).ToArray());
        _addDummyPrefix = addDummyPrefix;
        _removeExtraWhitespaces = removeExtraWhitespaces;
        _space = escapeWhitespaces ? SpaceSymbol : ' ';
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

    /// <summary>text [n chars] → normalized chars in the first <paramref name="length"/> (≤ n + 1) entries of the result.</summary>
    public char[] Normalize(string text, out int length)
    {
        char[] output = new char[text.Length + 1];
        int o = 0, i = 0;
        if (_removeExtraWhitespaces)
            while (i < text.Length && text[i] == ' ') i++;
        if (i == text.Length)
        {
            length = 0;
            return output;
        }
        if (_addDummyPrefix) output[o++] = _space;
        bool prevIsSpace = _removeExtraWhitespaces;
        while (i < text.Length)
        {
            var rest = text.AsSpan(i);
            int consumed = MatchUserDefined(rest);
            if (consumed == 0) consumed = CodePointLength(rest);
            // sentencepiece works on UTF-8 and maps malformed input to U+FFFD; here that is an unpaired surrogate.
            ReadOnlySpan<char> piece = consumed == 1 && char.IsSurrogate(rest[0]) ? "\uFFFD" : rest[..consumed];
            if (prevIsSpace) piece = piece.TrimStart(' ');
            if (!piece.IsEmpty)
            {
                foreach (char c in piece) output[o++] = c == ' ' ? _space : c;
                prevIsSpace = piece[^1] == ' ';
            }
            i += consumed;
            if (!_removeExtraWhitespaces) prevIsSpace = false;
        }
        if (_removeExtraWhitespaces)
            while (o > 0 && output[o - 1] == _space) o--;
        length = o;
        return output;
    }
}
