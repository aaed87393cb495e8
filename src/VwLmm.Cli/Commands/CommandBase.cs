using VwLmm.Core;
using VwLmm.Data.Images;
using VwLmm.Data.Text;
using VwLmm.Model;
using VwLmm.Model.Checkpoints;

namespace VwLmm.Cli.Commands;

/// <summary>What several verbs share: loading a model directory with its tokenizer, and images as the model wants them.</summary>
internal static class Shared
{
    /// <summary>A model directory: config.json, safetensors weights and tokenizer.model beside them.</summary>
    public static (VwLmmModel Model, SentencePieceTokenizer Tokenizer) LoadModel(IBackend backend, string dir, bool allowUnused, TextWriter log)
    {
        string tokPath = Path.Combine(dir, "tokenizer.model");
        if (!Directory.Exists(dir)) throw new CliException($"--model: directory '{dir}' does not exist");
        if (!File.Exists(tokPath)) throw new CliException($"--model: '{tokPath}' is missing (the tokenizer must sit beside the weights)");
        var tok = SentencePieceTokenizer.Load(tokPath);
        var model = ModelCheckpoint.Load(backend, dir, allowUnused, log);
        if (tok.VocabSize != model.Config.Llm.VocabSize)
        {
            model.Dispose();
            throw new CliException($"{tokPath}: tokenizer has {tok.VocabSize} pieces, config.json says vocab_size {model.Config.Llm.VocabSize}");
        }
        return (model, tok);
    }

    /// <summary>CLIP preprocessing as the model's config asks (size, LLaVA pad).</summary>
    public static ClipPreprocessor Preprocessor(VwLmmConfig c) =>
        new(new ClipPreprocessorOptions { Size = c.Vision.ImageSize, Pad = c.ImageAspectRatio == ImageAspectRatio.Pad });

    public static string Json(object value) =>
        System.Text.Json.JsonSerializer.Serialize(value, new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
}
