using VwLmm.Data.Conversations;

namespace VwLmm.Model.Training;

/// <summary>One tokenised example and, when it has an image, its preprocessed pixels [3,S,S] (CHW, CLIP-normalised).</summary>
public sealed record TrainingExample(TokenizedConversation Tokens, float[]? Pixels);

/// <summary>A counterfactual twin of an example (<see cref="ITrainingSource.Twin"/>): its first answer must come out as the
/// original's answer number <paramref name="Answer"/> (0-based) does.</summary>
public sealed record TwinExample(TrainingExample Example, int Answer);

/// <summary>An indexable, deterministic set of examples: Get(i) returns the same example every time.</summary>
public interface ITrainingSource
{
    int Count { get; }
    TrainingExample Get(int index);

    /// <summary>Get(index).Tokens, for readers that need no pixels (the answer prior); override where the tokens come
    /// cheaper than the whole example.</summary>
    TokenizedConversation Tokens(int index) => Get(index).Tokens;

    /// <summary>A counterfactual twin of example index, trained beside it when a stage has a twin weight
    /// (<see cref="StageConfig.TwinWeight"/>); null when it has none (by default, for every example).</summary>
    TwinExample? Twin(int index) => null;

    /// <summary>The template its conversations are encoded with; null for plain text.</summary>
    ConversationTemplate? Template => null;
}
