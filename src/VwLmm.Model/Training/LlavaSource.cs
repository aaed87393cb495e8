using VwLmm.Data.Conversations;
using VwLmm.Data.Images;
using VwLmm.Data.Text;

namespace VwLmm.Model.Training;

/// <summary>A LLaVA-format JSON dataset as a training source: samples encoded with a template, images CLIP-preprocessed on read.</summary>
public sealed class LlavaSource(LlavaDataset dataset, ConversationTemplate template, ITokenizer tokenizer, ClipPreprocessor preprocessor) : ITrainingSource
{
    public int Count => dataset.Samples.Count;

    public ConversationTemplate Template => template;

    public TrainingExample Get(int index)
    {
        var sample = dataset.Samples[index];
        var tokens = template.Encode(sample, tokenizer);
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
