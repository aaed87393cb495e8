namespace VwLmm.Data.Text;

/// <summary>What the data layer needs from a tokenizer: SentencePiece models and the test doubles both provide it.</summary>
public interface ITokenizer
{
    int VocabSize { get; }
    int BosId { get; }
    int EosId { get; }
    /// <summary>Padding id, or −1 when the model defines none (LLaMA); batching then pads with EOS/0 under label −100.</summary>
    int PadId { get; }
    int UnkId { get; }
    /// <summary>Token ids of <paramref name="text"/>, with BOS prepended when <paramref name="addBos"/>.</summary>
    int[] Encode(string text, bool addBos = true);
    /// <summary>Text of <paramref name="ids"/>; control tokens (BOS/EOS/PAD) are skipped.</summary>
    string Decode(ReadOnlySpan<int> ids);
    /// <summary>The piece string of one id (for reports: visual-word labels).</summary>
    string IdToPiece(int id);
    /// <summary>The id of a piece, or −1.</summary>
    int PieceToId(string piece);
}
