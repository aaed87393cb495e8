using VwLmm.Data.Conversations;

namespace VwLmm.Model.Training;

/// <summary>One tokenised example and, when it has an image, its preprocessed pixels [3,S,S] (CHW, CLIP-normalised).</summary>
public sealed record TrainingExample(TokenizedConversation Tokens, float[]? Pixels);

/// <summary>An indexable, deterministic set of examples: Get(i) returns the same example every time.</summary>
public interface ITrainingSource
{
    int Count { get; }
    TrainingExample Get(int index);
}
