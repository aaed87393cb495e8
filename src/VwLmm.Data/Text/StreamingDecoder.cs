namespace VwLmm.Data.Text;

/// <summary>
/// Turns generated ids into text as they arrive, for printing an answer while it is decoded. What it hands out is
/// always a prefix of the finished text, and all of it together is exactly <c>Decode(ids).Trim()</c>: the text is
/// decoded whole after each id and only its settled part is released. Held back: leading whitespace (never released),
/// trailing whitespace (released once text follows it) and trailing U+FFFD — an unfinished UTF-8 sequence of byte
/// pieces decodes to U+FFFD until its last byte arrives. Anything before a character other than U+FFFD is settled:
/// UTF-8 resynchronises at every character start, so later bytes cannot change it.
/// </summary>
public sealed class StreamingDecoder(ITokenizer tokenizer)
{
    private readonly List<int> _ids = [];
    private int _released; // characters of the left-trimmed text already handed out

    /// <summary>Adds one id; returns the text it settles (often empty).</summary>
    public string Push(int id)
    {
        _ids.Add(id);
        var text = Text();
        int settled = text.Length;
        while (settled > _released && (char.IsWhiteSpace(text[settled - 1]) || text[settled - 1] == '\uFFFD')) settled--;
        return Release(text, settled);
    }

    /// <summary>The rest of the answer, trailing whitespace dropped; the decoder then starts a new answer.</summary>
    public string Finish()
    {
        var text = Text().TrimEnd();
        string rest = Release(text, text.Length);
        _ids.Clear();
        _released = 0;
        return rest;
    }

    private string Text() => tokenizer.Decode(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_ids)).TrimStart();

    private string Release(string text, int end)
    {
        if (end <= _released) return "";
        string chunk = text[_released..end];
        _released = end;
        return chunk;
    }
}
