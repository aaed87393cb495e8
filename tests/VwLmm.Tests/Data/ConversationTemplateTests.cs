using NUnit.Framework;
using VwLmm.Data.Conversations;

namespace VwLmm.Tests.Data;

public class ConversationTemplateTests
{
    private const string System = "A chat between a curious user and an artificial intelligence assistant. " +
                                  "The assistant gives helpful, detailed, and polite answers to the user's questions.";

    private static readonly Turn[] TwoRounds =
    [
        new(Speaker.Human, "<image>\nwhat colour is the triangle ?"),
        new(Speaker.Gpt, "green"),
        new(Speaker.Human, "how many circles ?"),
        new(Speaker.Gpt, "2"),
    ];

    [Test]
    public void VicunaRendersLikeLlavaGetPrompt()
    {
        string expected = System + " USER: <image>\nwhat colour is the triangle ? ASSISTANT: green</s>" +
                          "USER: how many circles ? ASSISTANT: 2</s>";
        Assert.That(ConversationTemplate.VicunaV1.Render(TwoRounds, hasImage: true), Is.EqualTo(expected));
        Assert.That(ConversationTemplate.VicunaV1.Render(TwoRounds[..3], hasImage: true),
                    Does.EndWith("USER: how many circles ? ASSISTANT:"));
    }

    [Test]
    public void MistralAndPlainRender()
    {
        Assert.That(ConversationTemplate.Mistral.Render(TwoRounds, hasImage: true),
                    Is.EqualTo("[INST] <image>\nwhat colour is the triangle ? [/INST]green</s>[INST] how many circles ? [/INST]2</s>"));
        var caption = new Turn[] { new(Speaker.Human, "describe <image>"), new(Speaker.Gpt, "a red circle") };
        Assert.That(ConversationTemplate.Plain.Render(caption, hasImage: true), Is.EqualTo("<image>a red circle\n"));
    }

    [Test]
    public void GenerationStopsWhereTrainingEndedTheAnswer()
    {
        // A LLaMA-like model (byte fallback: "\n" is <0x0A>).
        var tok = VwLmm.Data.Text.SentencePieceTokenizer.Load(Tokenizer.SentencePieceFixtureTests.FixturePath("llama_like.model"));
        Assert.That(ConversationTemplate.VicunaV1.StopIds(tok), Is.EquivalentTo(new[] { tok.EosId }), "vicuna's answers end with EOS");
        var stops = ConversationTemplate.Plain.StopIds(tok);
        var caption = new Turn[] { new(Speaker.Human, "<image>"), new(Speaker.Gpt, "a red circle") };
        int[] trained = ConversationTemplate.Plain.Encode(caption, hasImage: true, tok).InputIds;
        Assert.That(stops, Does.Contain(tok.EosId).And.Contain(trained[^1]), "plain's answers end with the \n it trains");
        Assert.That(trained.SkipLast(1).Where(stops.Contains), Is.Empty, "nothing before the end stops the caption");
        Assert.That(stops.All(id => id == tok.EosId || tok.Decode([id]).EndsWith('\n')), Is.True);
    }

    [Test]
    public void UnknownTemplateNamesTheValidOnes()
    {
        var e = Assert.Throws<ArgumentException>(() => ConversationTemplate.Get("vicuna"))!;
        Assert.That(e.Message, Does.Contain("vicuna_v1").And.Contain("mistral").And.Contain("plain"));
        Assert.That(ConversationTemplate.Get("mistral"), Is.SameAs(ConversationTemplate.Mistral));
    }

    [Test]
    public void VicunaMatchesLlavaPreprocessV1([Values(1, 2, 3)] int rounds, [Values] bool hasImage)
    {
        var tok = new PieceTestTokenizer();
        var turns = new List<Turn>();
        for (int r = 0; r < rounds; r++)
        {
            turns.Add(new(Speaker.Human, (r == 0 && hasImage ? "<image>\n" : "") + $"question number {r} here ?"));
            turns.Add(new(Speaker.Gpt, $"answer {r} is long , really"));
        }
        var (ids, labels) = LlavaPreprocessV1(turns, tok);
        var got = ConversationTemplate.VicunaV1.Encode(turns, hasImage, tok);
        Assert.That(got.InputIds, Is.EqualTo(ids));
        Assert.That(got.Labels, Is.EqualTo(labels));
        Assert.That(got.InputIds.Count(i => i == Llava.ImageTokenIndex), Is.EqualTo(hasImage ? 1 : 0));
        Assert.That(labels.Count(l => l == tok.EosId), Is.EqualTo(rounds), "every answer's </s> is trained");
    }

    [Test]
    public void PlainMatchesLlavaPreprocessPlain()
    {
        var tok = new PieceTestTokenizer();
        var turns = new Turn[] { new(Speaker.Human, "<image>\nsay it"), new(Speaker.Gpt, "a red circle at top left") };
        int[] ids = TokenizerImageToken("<image>" + "a red circle at top left" + "\n", tok);
        int[] labels = (int[])ids.Clone();
        int masked = TokenizerImageToken("<image>", tok).Length;
        for (int i = 0; i < masked; i++) labels[i] = Llava.IgnoreIndex;
        var got = ConversationTemplate.Plain.Encode(turns, hasImage: true, tok);
        Assert.That(got.InputIds, Is.EqualTo(ids));
        Assert.That(got.Labels, Is.EqualTo(labels));
        Assert.That(got.InputIds[..2], Is.EqualTo(new[] { tok.BosId, Llava.ImageTokenIndex }));
    }

    [Test]
    public void GenerationPromptIsTrainingPrefixUpToAssistant()
    {
        var tok = new PieceTestTokenizer();
        var full = ConversationTemplate.VicunaV1.Encode(TwoRounds, hasImage: true, tok);
        var prompt = ConversationTemplate.VicunaV1.EncodePrompt(TwoRounds[..3], hasImage: true, tok);
        Assert.That(prompt.InputIds, Is.EqualTo(full.InputIds[..prompt.InputIds.Length]));
        Assert.That(prompt.Labels, Is.All.EqualTo(Llava.IgnoreIndex));
        Assert.That(tok.IdToPiece(prompt.InputIds[^1]), Is.EqualTo("\u2581ASSISTANT:"));
        Assert.That(tok.Decode(full.InputIds.AsSpan(prompt.InputIds.Length)), Is.EqualTo("2"));
    }

    [Test]
    public void MistralMasksInstructionsAndKeepsAnswers()
    {
        var tok = new PieceTestTokenizer();
        var got = ConversationTemplate.Mistral.Encode(TwoRounds, hasImage: true, tok);
        var trained = got.Labels.Where(l => l != Llava.IgnoreIndex).ToArray();
        Assert.That(trained, Is.EqualTo(new[] { tok.PieceToId("\u2581green"), tok.EosId, tok.PieceToId("\u25812"), tok.EosId }));
        Assert.That(tok.IdToPiece(got.InputIds[1]), Is.EqualTo("\u2581[INST]"));
    }

    [Test]
    public void PlaceholderIsMovedToFrontAndPrependedWhenMissing()
    {
        var tok = new PieceTestTokenizer();
        var moved = new Turn[] { new(Speaker.Human, "what is this ? <image>"), new(Speaker.Gpt, "a cat") };
        Assert.That(ConversationTemplate.VicunaV1.Render(moved, hasImage: true),
                    Does.Contain("USER: <image>\nwhat is this ? ASSISTANT:"));
        var missing = new Turn[] { new(Speaker.Human, "what is this ?"), new(Speaker.Gpt, "a cat") };
        var withImage = ConversationTemplate.VicunaV1.Encode(missing, hasImage: true, tok);
        var explicitly = ConversationTemplate.VicunaV1.Encode(
            [new(Speaker.Human, "<image>\nwhat is this ?"), new(Speaker.Gpt, "a cat")], hasImage: true, tok);
        Assert.That(withImage.InputIds, Is.EqualTo(explicitly.InputIds));
    }

    [Test]
    public void BadConversationsAreRejected()
    {
        var tok = new PieceTestTokenizer();
        var t = ConversationTemplate.VicunaV1;
        Assert.Throws<ArgumentException>(() => t.Encode([new(Speaker.Human, "<image>\nhi"), new(Speaker.Gpt, "yo")], false, tok));
        Assert.Throws<ArgumentException>(() => t.Encode([new(Speaker.Gpt, "yo"), new(Speaker.Human, "hi")], false, tok));
        Assert.Throws<ArgumentException>(() => t.Encode([new(Speaker.Human, "hi")], false, tok));
        Assert.Throws<ArgumentException>(() => t.EncodePrompt([new(Speaker.Human, "hi"), new(Speaker.Gpt, "yo")], false, tok));
        Assert.Throws<ArgumentException>(() => t.Encode([new(Speaker.Human, "<image> <image>"), new(Speaker.Gpt, "yo")], true, tok));
        Assert.Throws<ArgumentException>(() => t.Encode([new(Speaker.Human, "hi"), new(Speaker.Gpt, "<image>")], true, tok));
        Assert.Throws<ArgumentException>(() => ConversationTemplate.Plain.Encode([new(Speaker.Human, "hi"), new(Speaker.Gpt, "yo")], false, tok));
    }

    /// <summary>LLaVA mm_utils.tokenizer_image_token over an HF-style tokenizer call.</summary>
    internal static int[] TokenizerImageToken(string prompt, PieceTestTokenizer tok)
    {
        var chunks = prompt.Split("<image>").Select(tok.EncodeWithSpecials).ToList();
        var ids = new List<int>();
        int offset = 0;
        if (chunks.Count > 0 && chunks[0].Length > 0 && chunks[0][0] == tok.BosId)
        {
            offset = 1;
            ids.Add(chunks[0][0]);
        }
        for (int c = 0; c < chunks.Count; c++)
        {
            if (c > 0) ids.AddRange(Enumerable.Repeat(Llava.ImageTokenIndex, offset + 1).Skip(offset));
            ids.AddRange(chunks[c].Skip(offset));
        }
        return ids.ToArray();
    }

    /// <summary>LLaVA train.py preprocess_v1 (has_image path), with its length arithmetic, on the TWO-style prompt.</summary>
    private static (int[] Ids, int[] Labels) LlavaPreprocessV1(IReadOnlyList<Turn> turns, PieceTestTokenizer tok)
    {
        string conversation = System + " ";
        for (int i = 0; i < turns.Count; i++)
            conversation += (i % 2 == 0 ? "USER" : "ASSISTANT") + ": " + turns[i].Value + (i % 2 == 0 ? " " : "</s>");
        int[] ids = TokenizerImageToken(conversation, tok);
        int[] target = (int[])ids.Clone();
        const string sep = " ASSISTANT: ";
        int cur = 1;
        target[0] = Llava.IgnoreIndex;
        foreach (string round in conversation.Split("</s>"))
        {
            if (round.Length == 0) break;
            string[] parts = round.Split(sep);
            if (parts.Length != 2) break;
            int roundLen = TokenizerImageToken(round, tok).Length;
            int instructionLen = TokenizerImageToken(parts[0] + sep, tok).Length - 2;
            for (int i = cur; i < cur + instructionLen; i++) target[i] = Llava.IgnoreIndex;
            cur += roundLen;
        }
        for (int i = cur; i < target.Length; i++) target[i] = Llava.IgnoreIndex;
        Assert.That(cur, Is.EqualTo(ids.Length), "LLaVA's own tokenization-mismatch check");
        return (ids, target);
    }
}
