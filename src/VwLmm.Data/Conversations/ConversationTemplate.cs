using VwLmm.Data.Text;

namespace VwLmm.Data.Conversations;

/// <summary>
/// A chat template (LLaVA conversation.py) that renders a conversation to text and to token ids with training labels.
/// <para>
/// Layout of round k (k = 0, 1, …): (k == 0 ? Head : UserPrefix) + user + UserSuffix, then AnswerGap + answer +
/// AnswerSuffix, then EOS when <see cref="EndsAnswerWithEos"/>. Everything of the user side is label −100; the answer,
/// its suffix and EOS keep their ids as labels, which is what LLaVA's preprocess_v1 / preprocess_plain produce.
/// </para>
/// <para>
/// Tokenisation: BOS, then the user side split on "&lt;image&gt;" into chunks encoded without BOS with one −200 between
/// them (LLaVA's tokenizer_image_token), then the answer + suffix encoded as its own chunk. AnswerGap is rendered but not
/// encoded: the tokenizer's dummy-prefix space stands for it, so for SentencePiece models (whose pieces never run across a
/// space) this equals LLaVA's whole-string encoding while making the label boundary exact instead of LLaVA's
/// length arithmetic. EOS is appended as an id, since SentencePiece does not parse "&lt;/s&gt;" in text.
/// </para>
/// </summary>
public sealed class ConversationTemplate
{
    private const string VicunaSystem = "A chat between a curious user and an artificial intelligence assistant. " +
                                        "The assistant gives helpful, detailed, and polite answers to the user's questions.";

    /// <summary>vicuna_v1: SeparatorStyle.TWO with seps " " and "&lt;/s&gt;".</summary>
    public static readonly ConversationTemplate VicunaV1 = new("vicuna_v1", VicunaSystem + " USER: ", "USER: ", " ASSISTANT:", " ", "", true, false);

    /// <summary>
    /// mistral (VW-LMM's SeparatorStyle.MISTRAL): "[INST] user [/INST]answer&lt;/s&gt;", no system prompt. The answer is
    /// encoded as its own chunk like in the other templates; VW-LMM's Mistral label masking is unknown (METHOD §1.5).
    /// </summary>
    public static readonly ConversationTemplate Mistral = new("mistral", "[INST] ", "[INST] ", " [/INST]", "", "", true, false);

    /// <summary>plain (LLaVA pretraining): "&lt;image&gt;" + caption + "\n"; the user text is replaced by the image alone.</summary>
    public static readonly ConversationTemplate Plain = new("plain", "", "", "", "", "\n", false, true);

    /// <summary>shapes_chat: vicuna_v1 without the system prompt, so ShapesGrid prompts stay a dozen tokens long.</summary>
    public static readonly ConversationTemplate ShapesChat = new("shapes_chat", "USER: ", "USER: ", " ASSISTANT:", " ", "", true, false);

    private static readonly ConversationTemplate[] BuiltIn = [VicunaV1, Mistral, Plain, ShapesChat];

    private ConversationTemplate(string name, string head, string userPrefix, string userSuffix, string answerGap,
                                 string answerSuffix, bool endsAnswerWithEos, bool imageOnlyUserTurn)
    {
        Name = name;
        Head = head;
        UserPrefix = userPrefix;
        UserSuffix = userSuffix;
        AnswerGap = answerGap;
        AnswerSuffix = answerSuffix;
        EndsAnswerWithEos = endsAnswerWithEos;
        ImageOnlyUserTurn = imageOnlyUserTurn;
    }

    public string Name { get; }
    /// <summary>Text before the first user message (system prompt and role tag).</summary>
    public string Head { get; }
    public string UserPrefix { get; }
    public string UserSuffix { get; }
    /// <summary>Rendered between the user side and the answer; supplied by the tokenizer's dummy prefix when encoding.</summary>
    public string AnswerGap { get; }
    /// <summary>Text appended to each answer and trained with it ("\n" for plain).</summary>
    public string AnswerSuffix { get; }
    public bool EndsAnswerWithEos { get; }
    /// <summary>Plain style: exactly one round, the user turn is reduced to the image placeholder.</summary>
    public bool ImageOnlyUserTurn { get; }

    public static IReadOnlyList<string> Names { get; } = BuiltIn.Select(t => t.Name).ToArray();

    /// <summary>The built-in template called <paramref name="name"/>; ArgumentException listing the valid names otherwise.</summary>
    public static ConversationTemplate Get(string name) =>
        BuiltIn.FirstOrDefault(t => t.Name == name)
        ?? throw new ArgumentException($"unknown conversation template '{name}'; valid: {string.Join(", ", Names)}", nameof(name));

    /// <summary>The prompt string as LLaVA's get_prompt writes it, EOS shown as "&lt;/s&gt;"; a trailing human turn ends at UserSuffix.</summary>
    public string Render(IReadOnlyList<Turn> turns, bool hasImage)
    {
        var t = Prepare(turns, hasImage, endsWithAnswer: turns.Count > 0 && turns[^1].From == Speaker.Gpt);
        var sb = new System.Text.StringBuilder();
        for (int i = 0; i < t.Count; i += 2)
        {
            sb.Append(UserSide(t, i));
            if (i + 1 < t.Count)
                sb.Append(AnswerGap).Append(t[i + 1].Value).Append(AnswerSuffix).Append(EndsAnswerWithEos ? "</s>" : "");
        }
        return sb.ToString();
    }

    /// <summary>
    /// The ids after which a generated answer is complete: EOS, and for a template whose answers end in text instead
    /// (plain's "\n") every id whose text ends with it, as LLaVA's stopping criterion stops on the separator.
    /// </summary>
    public IReadOnlySet<int> StopIds(ITokenizer tokenizer)
    {
        var ids = new HashSet<int> { tokenizer.EosId };
        if (EndsAnswerWithEos || AnswerSuffix.Length == 0) return ids;
        for (int id = 0; id < tokenizer.VocabSize; id++)
            if (tokenizer.Decode([id]).EndsWith(AnswerSuffix, StringComparison.Ordinal)) ids.Add(id);
        return ids;
    }

    /// <summary>Ids and labels of a complete conversation (ending with gpt) for training: ids [n], labels [n].</summary>
    public TokenizedConversation Encode(ConversationSample sample, ITokenizer tokenizer) =>
        Encode(sample.Turns, sample.HasImage, tokenizer);

    /// <summary>Ids and labels of a complete conversation (ending with gpt) for training: ids [n], labels [n].</summary>
    public TokenizedConversation Encode(IReadOnlyList<Turn> turns, bool hasImage, ITokenizer tokenizer) =>
        EncodeCore(Prepare(turns, hasImage, endsWithAnswer: true), tokenizer);

    /// <summary>Ids of a generation prompt (turns ending with human) up to and including UserSuffix; labels all −100.</summary>
    public TokenizedConversation EncodePrompt(IReadOnlyList<Turn> turns, bool hasImage, ITokenizer tokenizer)
    {
        var prompt = EncodeCore(Prepare(turns, hasImage, endsWithAnswer: false), tokenizer);
        Array.Fill(prompt.Labels, Llava.IgnoreIndex);
        return prompt;
    }

    /// <summary>Why the turns cannot be encoded in this template, or null: what loaders check before a run begins.</summary>
    public string? Problem(IReadOnlyList<Turn> turns, bool hasImage, bool endsWithAnswer)
    {
        if (ConversationRules.Problem(turns, hasImage, endsWithAnswer) is { } problem) return $"template {Name}: {problem}";
        if (!ImageOnlyUserTurn) return null;
        // LLaVA's preprocess_plain asserts one image-bearing round and keeps only the placeholder of the user text.
        if (!hasImage) return $"template {Name} needs an image";
        if (turns.Count > 2) return $"template {Name} takes one round, got {turns.Count} turns";
        return null;
    }

    private IReadOnlyList<Turn> Prepare(IReadOnlyList<Turn> turns, bool hasImage, bool endsWithAnswer)
    {
        if (Problem(turns, hasImage, endsWithAnswer) is { } problem) throw new ArgumentException(problem, nameof(turns));
        if (!ImageOnlyUserTurn) return ConversationRules.NormalizeImagePlaceholder(turns, hasImage);
        var result = turns.ToArray();
        result[0] = result[0] with { Value = Llava.ImagePlaceholder };
        return result;
    }

    private string UserSide(IReadOnlyList<Turn> turns, int i) => (i == 0 ? Head : UserPrefix) + turns[i].Value + UserSuffix;

    private TokenizedConversation EncodeCore(IReadOnlyList<Turn> turns, ITokenizer tokenizer)
    {
        var ids = new List<int> { tokenizer.BosId };
        var labels = new List<int> { Llava.IgnoreIndex };
        for (int i = 0; i < turns.Count; i += 2)
        {
            string[] chunks = UserSide(turns, i).Split(Llava.ImagePlaceholder);
            for (int c = 0; c < chunks.Length; c++)
            {
                if (c > 0)
                {
                    ids.Add(Llava.ImageTokenIndex);
                    labels.Add(Llava.IgnoreIndex);
                }
                if (chunks[c].Length == 0) continue;
                int[] chunkIds = tokenizer.Encode(chunks[c], addBos: false);
                ids.AddRange(chunkIds);
                labels.AddRange(Enumerable.Repeat(Llava.IgnoreIndex, chunkIds.Length));
            }
            if (i + 1 == turns.Count) break;
            int[] answer = tokenizer.Encode(turns[i + 1].Value + AnswerSuffix, addBos: false);
            ids.AddRange(answer);
            labels.AddRange(answer);
            if (EndsAnswerWithEos)
            {
                ids.Add(tokenizer.EosId);
                labels.Add(tokenizer.EosId);
            }
        }
        return new TokenizedConversation(ids.ToArray(), labels.ToArray());
    }
}
