namespace VwLmm.Data.Conversations;

/// <summary>Constants shared with LLaVA (llava/constants.py).</summary>
public static class Llava
{
    /// <summary>Sentinel id standing for one whole image in token sequences (IMAGE_TOKEN_INDEX).</summary>
    public const int ImageTokenIndex = -200;
    /// <summary>Label of positions that take no text loss (IGNORE_INDEX).</summary>
    public const int IgnoreIndex = -100;
    /// <summary>The placeholder string marking where the image goes in a user turn (DEFAULT_IMAGE_TOKEN).</summary>
    public const string ImagePlaceholder = "<image>";
}

/// <summary>Who speaks a turn; LLaVA JSON writes "human" and "gpt".</summary>
public enum Speaker { Human, Gpt }

/// <summary>One message of a conversation.</summary>
public sealed record Turn(Speaker From, string Value);

/// <summary>A LLaVA-style sample: an optional image (path relative to the dataset's image folder) and alternating turns.</summary>
public sealed record ConversationSample(string Id, string? Image, IReadOnlyList<Turn> Turns)
{
    public bool HasImage => Image is not null;
}

/// <summary>Token ids (−200 = the image sentinel) and training labels (−100 = no loss), both of the same length.</summary>
public sealed record TokenizedConversation(int[] InputIds, int[] Labels);

/// <summary>Role order and image-placeholder rules, shared by the JSON reader (file errors) and the templates (call errors).</summary>
public static class ConversationRules
{
    /// <summary>
    /// Why <paramref name="turns"/> is not a valid conversation, or null. Turns alternate human/gpt starting with human;
    /// a complete conversation ends with gpt, a generation prompt with human. At most one "&lt;image&gt;", only in a
    /// human turn, and only when the sample has an image.
    /// </summary>
    public static string? Problem(IReadOnlyList<Turn> turns, bool hasImage, bool endsWithAnswer)
    {
        if (turns.Count == 0) return "conversation has no turns";
        int placeholders = 0;
        for (int i = 0; i < turns.Count; i++)
        {
            var expected = i % 2 == 0 ? Speaker.Human : Speaker.Gpt;
            if (turns[i].From != expected)
                return $"turn {i} is from {Name(turns[i].From)}, expected {Name(expected)} (turns alternate, starting with human)";
            int n = CountPlaceholders(turns[i].Value);
            if (n > 0 && turns[i].From == Speaker.Gpt) return $"turn {i} (gpt) contains {Llava.ImagePlaceholder}";
            placeholders += n;
        }
        var last = turns[^1].From;
        if (endsWithAnswer && last != Speaker.Gpt) return $"last turn {turns.Count - 1} is from human; a training conversation ends with gpt";
        if (!endsWithAnswer && last != Speaker.Human) return $"last turn {turns.Count - 1} is from gpt; a generation prompt ends with human";
        if (placeholders > 1) return $"{placeholders} {Llava.ImagePlaceholder} placeholders; at most one image per sample";
        if (placeholders == 1 && !hasImage) return $"{Llava.ImagePlaceholder} placeholder but the sample has no image";
        return null;
    }

    /// <summary>
    /// LLaVA's preprocess_multimodal: the human turn holding the placeholder becomes "&lt;image&gt;\n" + the rest, trimmed.
    /// A sample with an image but no placeholder gets it prepended to its first human turn, as LLaVA's
    /// Conversation.get_prompt does at inference (LLaVA's training path would silently drop such an image instead).
    /// Call on turns that passed <see cref="Problem"/>.
    /// </summary>
    public static IReadOnlyList<Turn> NormalizeImagePlaceholder(IReadOnlyList<Turn> turns, bool hasImage)
    {
        if (!hasImage) return turns;
        int at = -1;
        for (int i = 0; i < turns.Count && at < 0; i++)
            if (turns[i].Value.Contains(Llava.ImagePlaceholder, StringComparison.Ordinal)) at = i;
        var result = turns.ToArray();
        int target = at < 0 ? 0 : at;
        string rest = result[target].Value.Replace(Llava.ImagePlaceholder, "", StringComparison.Ordinal).Trim();
        result[target] = result[target] with { Value = (Llava.ImagePlaceholder + "\n" + rest).Trim() };
        return result;
    }

    public static string Name(Speaker s) => s == Speaker.Human ? "human" : "gpt";

    private static int CountPlaceholders(string s)
    {
        int n = 0;
        for (int i = s.IndexOf(Llava.ImagePlaceholder, StringComparison.Ordinal); i >= 0;
             i = s.IndexOf(Llava.ImagePlaceholder, i + Llava.ImagePlaceholder.Length, StringComparison.Ordinal))
            n++;
        return n;
    }
}
