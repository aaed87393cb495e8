using VwLmm.Core;
using VwLmm.Data.Conversations;
using VwLmm.Data.Images;
using VwLmm.Data.Text;
using VwLmm.Model;
using VwLmm.Model.Checkpoints;

namespace VwLmm.Cli.Commands;

/// <summary>What several verbs share: loading a model directory with its tokenizer, and images as the model wants them.</summary>
internal static class Shared
{
    /// <summary>The options of the verbs that load a model for inference (<see cref="Weights"/>).</summary>
    public static readonly string[] InferenceOptions = ["--weights"];

    /// <summary>--weights f32|bf16: how the linear layers' weights are stored.</summary>
    public static DType Weights(CliArgs args) => args.Get("--weights") switch
    {
        null or "f32" => DType.F32,
        "bf16" => DType.BF16,
        var w => throw new UsageException($"--weights must be f32 or bf16, not '{w}'"),
    };

    /// <summary>Refuses a model folder that is absent or a file (one of the model's own files, most likely).</summary>
    public static void ModelDirectory(string dir)
    {
        if (!Directory.Exists(dir))
            throw new CliException(File.Exists(dir) ? $"--model: '{dir}' is a file; a model is the folder it lies in" : $"--model: directory '{dir}' does not exist");
    }

    /// <summary>A model directory: config.json, safetensors weights and tokenizer.model beside them.</summary>
    public static (VwLmmModel Model, SentencePieceTokenizer Tokenizer) LoadModel(IBackend backend, string dir, bool allowUnused, TextWriter log,
                                                                                 DType weights = DType.F32)
    {
        string tokPath = Path.Combine(dir, "tokenizer.model");
        ModelDirectory(dir);
        if (!File.Exists(tokPath)) throw new CliException($"--model: '{tokPath}' is missing (the tokenizer must sit beside the weights)");
        var tok = SentencePieceTokenizer.Load(tokPath);
        var model = ModelCheckpoint.Load(backend, dir, allowUnused, log, weights);
        if (tok.VocabSize != model.Config.Llm.VocabSize)
        {
            model.Dispose();
            throw new CliException($"{tokPath}: tokenizer has {tok.VocabSize} pieces, config.json says vocab_size {model.Config.Llm.VocabSize}");
        }
        return (model, tok);
    }

    /// <summary>The --template lines of the help of the verbs that take it (indented as the help's option lines).</summary>
    public const string TemplateHelp =
        "--template NAME  vicuna_v1, mistral, plain or shapes_chat (default: the one the model's config.json records\n" +
        "                   as conversation_template — `vwlmm train` and `vwlmm demo` write it — else vicuna_v1)";

    /// <summary>The --weights lines of the help of the verbs that load a model for inference.</summary>
    public const string WeightsHelp =
        "--weights bf16  keep the linear layers' weights in bf16: half the memory and of the bytes each decoded\n" +
        "                   token reads, computed in f32 (default f32: as stored, F16/BF16 checkpoints widened)";

    /// <summary>The --allow-unused lines of the help of the verbs that read a checkpoint.</summary>
    public const string AllowUnusedHelp =
        "--allow-unused  accept tensors the model does not use (listed, then skipped) instead of refusing the\n" +
        "                   checkpoint: e.g. weights of heads another code base added";

    /// <summary>--template, checked before a model loads; null when not given.</summary>
    public static ConversationTemplate? TemplateOption(CliArgs args) =>
        args.Get("--template") is { } name ? ConversationTemplate.Get(name) : null;

    /// <summary>The conversation template: --template, else the one config.json records (what the model was trained
    /// with), else LLaVA-1.5's vicuna_v1.</summary>
    public static ConversationTemplate Template(ConversationTemplate? option, VwLmmConfig c) =>
        option ?? (c.ConversationTemplate is { } name ? ConversationTemplate.Get(name) : ConversationTemplate.VicunaV1);

    /// <summary>CLIP preprocessing as the model's config asks (size, LLaVA pad).</summary>
    public static ClipPreprocessor Preprocessor(VwLmmConfig c) =>
        new(new ClipPreprocessorOptions { Size = c.Vision.ImageSize, Pad = c.ImageAspectRatio == ImageAspectRatio.Pad });

    public static string Json(object value) =>
        System.Text.Json.JsonSerializer.Serialize(value, new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
}
