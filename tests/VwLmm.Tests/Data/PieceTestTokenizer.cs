using VwLmm.Data.Text;

namespace VwLmm.Tests.Data;

/// <summary>
/// A test double that tokenises like a SentencePiece model with add_dummy_prefix and no whitespace folding (LLaMA's):
/// "▁" + text with spaces as "▁", cut before every "▁". Pieces get ids on first sight, so any text is in vocabulary.
/// Encode never parses "&lt;/s&gt;"; <see cref="EncodeWithSpecials"/> does, the way a HF tokenizer call would.
/// </summary>
internal sealed class PieceTestTokenizer : ITokenizer
{
    private readonly List<string> _pieces = ["<unk>", "<s>", "</s>"];
    private readonly Dictionary<string, int> _ids = new() { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };

    public int VocabSize => _pieces.Count;
    public int BosId => 1;
    public int EosId => 2;
    public int PadId => -1;
    public int UnkId => 0;

    public int[] Encode(string text, bool addBos = true)
    {
        var ids = new List<int>();
        if (addBos) ids.Add(BosId);
        if (text.Length == 0) return ids.ToArray();
        string s = "\u2581" + text.Replace(' ', '\u2581');
        int start = 0;
        for (int i = 1; i <= s.Length; i++)
        {
            if (i < s.Length && s[i] != '\u2581') continue;
            ids.Add(Id(s[start..i]));
            start = i;
        }
        return ids.ToArray();
    }

    /// <summary>HF-style tokenizer(text).input_ids: BOS, then text split at "&lt;/s&gt;", each part encoded, EOS between.</summary>
    public int[] EncodeWithSpecials(string text)
    {
        var ids = new List<int> { BosId };
        string[] parts = text.Split("</s>");
        for (int p = 0; p < parts.Length; p++)
        {
            if (p > 0) ids.Add(EosId);
            ids.AddRange(Encode(parts[p], addBos: false));
        }
        return ids.ToArray();
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        var sb = new System.Text.StringBuilder();
        foreach (int id in ids)
            if (id > EosId) sb.Append(_pieces[id]);
        return sb.ToString().Replace('\u2581', ' ').TrimStart(' ');
    }

    public string IdToPiece(int id) => _pieces[id];
    public int PieceToId(string piece) => _ids.GetValueOrDefault(piece, -1);

    private int Id(string piece)
    {
        if (_ids.TryGetValue(piece, out int id)) return id;
        _ids[piece] = _pieces.Count;
        _pieces.Add(piece);
        return _pieces.Count - 1;
    }
}
