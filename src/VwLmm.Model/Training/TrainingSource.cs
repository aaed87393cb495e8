using VwLmm.Data.Conversations;

namespace VwLmm.Model.Training;

/// <summary>One tokenised example and, when it has an image, its preprocessed pixels [3,S,S] (CHW, CLIP-normalised).</summary>
public sealed record TrainingExample(TokenizedConversation Tokens, float[]? Pixels);

/// <summary>An indexable, deterministic set of examples: Get(i) returns the same example every time.</summary>
public interface ITrainingSource
{
    int Count { get; }
    TrainingExample Get(int index);

    /// <summary>Get(index).Tokens, for readers that need no pixels (the answer prior); override where the tokens come
    /// cheaper than the whole example.</summary>
    TokenizedConversation Tokens(int index) => Get(index).Tokens;

    /// <summary>The template its conversations are encoded with; null for plain text.</summary>
    ConversationTemplate? Template => null;
}
