using System.Text.Json;
using System.Text.Json.Serialization;
using VwLmm.Core;
using VwLmm.Data;
using VwLmm.Data.Batching;
using VwLmm.Data.Conversations;
using VwLmm.Data.Images;
using VwLmm.Model;

namespace VwLmm.Cli.Commands;

public sealed class ForwardCommand : ICommand
{
    public string Name => "forward";
    public string Summary => "one forward pass; dump logits, visual words and losses as .npy/.json for parity checks";
    public string Help => $$"""
        usage: vwlmm forward --model DIR (--image X | --pixels P.npy) (--ids IDS.json [--labels LABELS.json]
                             | --prompt TEXT [--answer TEXT] [--template NAME]) --dump OUT [--attention] [--weights bf16] [--device D] [--threads N]
          Writes OUT/logits.npy (f32 [L,V], every position after image expansion), OUT/visual_words.npy (f32 [N_img,V],
          p = softmax(W_vm·x)), OUT/text_loss.npy (f32 [L]: loss of logits at t against label t+1, 0 where ignored) and
          OUT/losses.json ({"text","vm","total"}). "vm" is the unweighted visual-word KL, measured even when the
          model's λ (vm_loss_weight) is 0, and total = text + λ·vm.
          --attention also writes OUT/attention.npy (f32 [layers,H,L,L]: each decoder layer's causal attention weights,
          row t over keys 0…t and zero after, as HF's output_attentions stacks them).
          IDS.json: a JSON array of token ids with −200 where the image goes. LABELS.json: same length, −100 = ignored
          (default: the ids, with the image position ignored). --pixels: an already preprocessed [3,S,S] float32 .npy.
          {{Shared.TemplateHelp}}
          The ids, with the image expanded, must fit in the model's max_position_embeddings: nothing is truncated.
          {{Shared.WeightsHelp}}
          {{Shared.AllowUnusedHelp}}
        example: vwlmm forward --model runs/demo/model --image a.png --prompt "what colour is the circle ?" --answer red --dump out
        """;
    public IReadOnlyList<string> Flags => ["--allow-unused", "--attention"];
    public IReadOnlyList<string> Valued => [.. Backends.Options, .. Shared.InferenceOptions, "--model", "--image", "--pixels", "--ids", "--labels", "--prompt", "--answer", "--template", "--dump"];

    public int Run(CliArgs args, TextWriter stdout)
    {
        string dump = CliArgs.NotAFile("--dump", args.Require("--dump"));
        if (args.Has("--image") == args.Has("--pixels")) throw new UsageException("give exactly one of --image and --pixels");
        if (args.Has("--ids") == args.Has("--prompt")) throw new UsageException("give exactly one of --ids and --prompt");
        // Each is read with one of the two only: ignored with the other, the dump would not be of what the user asked for.
        if (args.Has("--ids"))
        {
            foreach (string option in (string[])["--answer", "--template"])
                if (args.Has(option)) throw new UsageException($"{option} goes with --prompt, not --ids");
        }
        else if (args.Has("--labels")) throw new UsageException("--labels goes with --ids, not --prompt");
        // Inputs are read before the model loads: a wrong path should not cost loading gigabytes of weights first.
        var image = args.Get("--image") is { } imagePath ? ImageCodec.Decode(imagePath) : null;
        var (npyPixels, npyShape) = args.Get("--pixels") is { } npy ? Npy.Read<float>(npy) : (null, null);
        if (npyPixels is not null && Array.FindIndex(npyPixels, x => !float.IsFinite(x)) is var bad and >= 0)
            throw new CliException($"{args.Get("--pixels")}: element {bad} is {npyPixels[bad]}; preprocessed pixels are finite");
        int[]? ids = args.Get("--ids") is { } idsFile ? ReadInts(idsFile) : null;
        // A --prompt gets its one image from the template, which refuses a second.
        if (ids is not null && ids.Count(i => i == Llava.ImageTokenIndex) is var images and not 1)
            throw new CliException($"{args.Get("--ids")}: {images} image sentinels −200 where a forward pass takes exactly one");
        int[]? labels = args.Get("--labels") is { } labelsFile ? ReadInts(labelsFile) : null;
        var templateOption = Shared.TemplateOption(args);
        if (ids is not null && labels is not null && labels.Length != ids.Length)
            throw new CliException($"{args.Get("--labels")}: {labels.Length} labels for {ids.Length} ids");
        var weights = Shared.Weights(args);
        using var backend = Backends.Create(args, Console.Error);
        var (model, tok) = Shared.LoadModel(backend, args.Require("--model"), args.Has("--allow-unused"), Console.Error, weights);
        using (model)
        {
            var c = model.Config;
            float[] pixels = image is not null ? Shared.Preprocessor(c).Process(image) : CheckPixels(args.Require("--pixels"), npyPixels!, npyShape!, c.Vision.ImageSize);
            TokenizedConversation sample;
            if (ids is not null)
            {
                CheckRange(args.Require("--ids"), "token id", ids, Llava.ImageTokenIndex, c.Llm.VocabSize);
                if (labels is not null) CheckRange(args.Require("--labels"), "label", labels, Llava.IgnoreIndex, c.Llm.VocabSize);
                sample = new TokenizedConversation(ids, labels ?? ids.Select(i => i == Llava.ImageTokenIndex ? Llava.IgnoreIndex : i).ToArray());
            }
            else
            {
                var template = Shared.Template(templateOption, c);
                var human = new Turn(Speaker.Human, Llava.ImagePlaceholder + "\n" + args.Require("--prompt"));
                sample = args.Get("--answer") is { } answer
                    ? template.Encode([human, new Turn(Speaker.Gpt, answer)], hasImage: true, tok)
                    : template.EncodePrompt([human], hasImage: true, tok);
            }
            var builder = new BatchBuilder(model.Vision.TokensPerImage, c.Llm.MaxPositionEmbeddings, c.Llm.VocabSize);
            // A parity dump of a silently truncated sequence would compare against the other implementation's full one.
            int length = builder.SplicedLength(sample);
            if (length > builder.MaxLength)
                throw new CliException($"{args.Get("--ids") ?? "--prompt/--answer"}: {length} positions with the image expanded to {builder.ImageTokens} tokens, over the model's max_position_embeddings {builder.MaxLength}");
            var batch = builder.Build([sample]);
            using var arena = new Arena(backend, 1L << 30);
            var tape = new Tape(backend, arena, record: false);
            var px = Ops.Input(tape, pixels, 1, c.Vision.NumChannels, c.Vision.ImageSize, c.Vision.ImageSize);
            var attention = new List<float[]>();
            var llm = c.Llm;
            if (args.Has("--attention"))
                model.Decoder.AttentionProbe = (_, q, k) => attention.Add(LlamaDecoder.AttentionProbabilities(
                    q.ToArray(), k.ToArray(), batch.L, llm.NumAttentionHeads, llm.NumKeyValueHeads, llm.HeadDim));
            // Weight 1 makes the model measure the KL whatever the checkpoint's λ: at λ = 0 it would skip it, and the
            // dump exists to compare it with another implementation's. Nothing records, so the weight scales no gradient.
            var output = model.Forward(tape, batch, px, vmLossWeight: 1);
            // λ as the float the model weighs with, so a λ > 0 total equals training's.
            double total = output.Text.Mean + (float)c.VmLossWeight * output.Vm.Mean;
            var vmLogits = output.VmLogits ?? model.VisualWordLogits(tape, output.ImageFeatures!);
            var p = Ops.Softmax(tape, vmLogits);
            CliArgs.CreateDirectory("--dump", dump);
            int v = c.Llm.VocabSize;
            Npy.Write<float>(Path.Combine(dump, "logits.npy"), output.Logits.ToArray(), [batch.L, v]);
            Npy.Write<float>(Path.Combine(dump, "visual_words.npy"), p.ToArray(), [p.Shape[0], v]);
            Npy.Write<float>(Path.Combine(dump, "text_loss.npy"), output.Text.PerRow!.ToArray(), [batch.L]);
            if (attention.Count > 0)
                Npy.Write<float>(Path.Combine(dump, "attention.npy"), attention.SelectMany(a => a).ToArray(),
                    [attention.Count, llm.NumAttentionHeads, batch.L, batch.L]);
            AtomicFile.WriteAllText(Path.Combine(dump, "losses.json"),
                JsonSerializer.Serialize(new { text = output.Text.Mean, vm = output.Vm.Mean, total }, LossesJson));
            if (!args.Has("--quiet"))
                stdout.WriteLine($"L={batch.L} text {output.Text.Mean:0.######} vm {output.Vm.Mean:0.######} total {total:0.######} → {dump}");
            return 0;
        }
    }

    /// <summary>A loss that overflowed (weights gone to NaN or ±∞) is written as the string "NaN", "Infinity" or
    /// "-Infinity": JSON has no such numbers, and the dump is most useful exactly then.</summary>
    private static readonly JsonSerializerOptions LossesJson = new() { NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals };

    /// <summary>Every value is <paramref name="special"/> or a token id in [0, V).</summary>
    private static void CheckRange(string path, string what, int[] values, int special, int V)
    {
        for (int i = 0; i < values.Length; i++)
            if (values[i] != special && (uint)values[i] >= (uint)V)
                throw new CliException($"{path}: {what} {values[i]} at index {i} is outside the vocabulary [0, {V}) (and is not {special})");
    }

    private static float[] CheckPixels(string path, float[] data, int[] shape, int size) =>
        shape is [3, var h, var w] && h == size && w == size
            ? data
            : throw new CliException($"{path}: shape [{string.Join(",", shape)}], the model needs [3,{size},{size}]");

    private static int[] ReadInts(string path)
    {
        try
        {
            return JsonSerializer.Deserialize<int[]>(File.ReadAllText(InputFile.Existing(path, "file"))) ?? throw new CliException($"{path}: expected a JSON array of integers");
        }
        catch (JsonException e)
        {
            throw new CliException($"{path}: not a JSON array of integers ({e.Message})");
        }
    }
}
