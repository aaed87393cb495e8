using VwLmm.Data.Conversations;
using VwLmm.Data.Images;
using VwLmm.Data.Text;

namespace VwLmm.Model.Training;

/// <summary>A LLaVA-format JSON dataset as a training source: samples encoded with a template, images CLIP-preprocessed on read.</summary>
public sealed class LlavaSource : ITrainingSource
{
    private readonly LlavaDataset dataset;
    private readonly ConversationTemplate template;
    private readonly ITokenizer tokenizer;
    private readonly ClipPreprocessor preprocessor;

    /// <summary>Every sample is checked against the template here, so that one it cannot encode (plain takes one
    /// round with an image) stops the run before it starts rather than when training reaches it.</summary>
    public LlavaSource(LlavaDataset dataset, ConversationTemplate template, ITokenizer tokenizer, ClipPreprocessor preprocessor)
    {
        for (int i = 0; i < dataset.Samples.Count; i++)
            if (template.Problem(dataset.Samples[i].Turns, dataset.Samples[i].HasImage, endsWithAnswer: true) is { } problem)
                throw new InvalidDataException($"{dataset.JsonPath}: entry {i} (id {dataset.Samples[i].Id}): {problem}");
        (this.dataset, this.template, this.tokenizer, this.preprocessor) = (dataset, template, tokenizer, preprocessor);
    }

    public int Count => dataset.Samples.Count;

    public ConversationTemplate Template => template;

    /// <summary>The ids alone, for readers that need no pixels (the answer prior): no image is decoded.</summary>
    public TokenizedConversation Tokens(int index) => template.Encode(dataset.Samples[index], tokenizer);

    public TrainingExample Get(int index)
    {
        var sample = dataset.Samples[index];
        var tokens = Tokens(index);
        float[]? pixels = null;
        if (sample.HasImage)
        {
            string path = dataset.ImagePath(sample);
            try
            {
                pixels = preprocessor.Process(ImageCodec.Decode(path));
            }
            catch (Exception e) when (e is IOException or InvalidDataException)
            {
                throw new InvalidDataException($"{dataset.JsonPath}: entry {index} ('{sample.Id}'): {e.Message}", e);
            }
        }
        return new TrainingExample(tokens, pixels);
    }
}
