using VwLmm.Core;
using VwLmm.Data.Batching;
using VwLmm.Data.Conversations;
using VwLmm.Data.ShapesGrid;
using VwLmm.Data.Text;

namespace VwLmm.Model.Recipes;

/// <summary>
/// One held-out question, what the model answered, and whether it matched exactly. NamesAnotherObject: a wrong answer
/// that is the colour or shape of another object in the image (<see cref="ShapesGridEvaluator.NamesAnotherObject"/>).
/// </summary>
public sealed record QaPrediction(string Id, QuestionKind Kind, string Question, string Expected, string Predicted, bool Correct, bool InvolvesHeldOut,
                                  bool NamesAnotherObject);

/// <summary>
/// A patch's visual word: argmax over the whole vocabulary, argmax over content words, top words, ground truth; the
/// logit lens's content word (argmax over content words of E·x, the input embeddings against the projector output); and
/// METHOD §7.4.3's next-patch prediction: the content word the LM head names at the position before the patch (where
/// the visual-word loss asks it to predict p), and whether its whole-vocabulary argmax is the patch's visual word.
/// </summary>
public sealed record PatchWord(int Row, int Column, string Word, string ContentWord, IReadOnlyList<(string Word, double P)> Top,
                               string Truth, bool IsObject, bool Correct, string LensWord, bool LensCorrect,
                               string PredictedWord, bool PredictedCorrect, bool PredictionAgrees);

/// <summary>
/// Held-out results of a ShapesGrid model. TrainDistribution: the same measure on as many unseen training-distribution
/// images (<see cref="ShapesGridRecipe.UnseenTrainingSample"/>), which separates what the model has not learned from
/// what it does not carry over to the held-out combinations.
/// </summary>
public sealed record ShapesGridResults(
    double QaAccuracy, IReadOnlyDictionary<string, double> QaAccuracyByKind, double QaAccuracyHeldOutCombos, int Questions,
    double VisualWordAccuracy, double VisualWordChance, double BackgroundWordAccuracy, double LogitLensAccuracy, int ObjectPatches,
    double NextPatchAccuracy, double NextPatchAgreement, IReadOnlyList<string> ContentWords, IReadOnlyList<QaPrediction> Predictions, IReadOnlyList<QaPrediction> TrainDistribution)
{
    /// <summary>Exact match on the training-distribution questions: "overall" and by question kind.</summary>
    public IReadOnlyDictionary<string, double> TrainDistributionAccuracy => WithOverall(ByKind(TrainDistribution), Accuracy(TrainDistribution));

    /// <summary>Exact match on the held-out questions: "overall" and by question kind, as results.json writes it.</summary>
    public IReadOnlyDictionary<string, double> QaAccuracyWithOverall => WithOverall(QaAccuracyByKind, QaAccuracy);

    private static Dictionary<string, double> WithOverall(IReadOnlyDictionary<string, double> byKind, double overall) =>
        new(byKind) { ["overall"] = overall };

    /// <summary>Share of correct predictions; 0 when there are none.</summary>
    internal static double Accuracy(IReadOnlyCollection<QaPrediction> predictions) =>
        predictions.Count == 0 ? 0 : predictions.Average(p => p.Correct ? 1.0 : 0.0);

    /// <summary><see cref="Accuracy"/> per lower-case question kind.</summary>
    internal static Dictionary<string, double> ByKind(IEnumerable<QaPrediction> predictions) =>
        predictions.GroupBy(p => p.Kind).ToDictionary(g => g.Key.ToString().ToLowerInvariant(), g => Accuracy(g.ToList()));

    /// <summary>
    /// Right and asked among the held-out split's questions of <paramref name="kind"/> (colour or shape) about an object of
    /// a held-out colour×shape pair, or with heldOut false about an object of a training pair in the same images. The
    /// held-out counts are what the demo's held-out target (≥ 90% on held-out colour and shape questions) is read on.
    /// </summary>
    public (int Right, int Asked) AboutPairs(QuestionKind kind, bool heldOut)
    {
        var asked = Predictions.Where(p => p.Kind == kind && p.InvolvesHeldOut == heldOut).ToList();
        return (asked.Count(p => p.Correct), asked.Count);
    }

    /// <summary>Of the wrong answers to colour and shape questions, the share that names another object's attribute (null when none is wrong).</summary>
    public double? WrongAnswersNamingAnotherObject
    {
        get
        {
            var wrong = Predictions.Where(p => p.Kind is QuestionKind.Colour or QuestionKind.Shape && !p.Correct).ToList();
            return wrong.Count == 0 ? null : wrong.Average(p => p.NamesAnotherObject ? 1.0 : 0.0);
        }
    }
}

/// <summary>
/// Measures a model on the world's test split: exact-match QA (greedy decoding, one question per prompt, by question
/// kind and for questions about held-out colour×shape combinations; the same QA on unseen training-distribution images
/// for comparison), and per-patch visual-word accuracy — the share of
/// object patches whose VM-head argmax, restricted to content words (colours, shapes, backgrounds), names the patch's
/// colour or shape (chance: 2 / content words). Beside it, METHOD §7.4's logit lens: the same measure with E·x in place of
/// W_vm·x, which says whether the projector output points at the right word embeddings whatever the VM head learned.
/// And §7.4.3's next-patch predictability: the same measure for the LM head's prediction at the position before each
/// object patch (what the decoder can know of a patch before seeing it), and the share of all patches whose visual word
/// is the LM head's argmax there (the agreement the visual-word loss trains for).
/// </summary>
public sealed class ShapesGridEvaluator
{
    private readonly VwLmmModel _model;
    private readonly ITokenizer _tok;
    private readonly ShapesGridRecipe _recipe;
    private readonly (string Word, int Id)[] _content;
    // The content words' rows of embed_tokens [content, d], in _content's order, for the logit lens.
    private readonly float[] _contentEmbeddings;
    // The QA prompt with an empty question, spliced, and the index of its image: every sample's patches go through it.
    private readonly Batch _patchPrompt;
    private readonly int _imageAt;

    public ShapesGridEvaluator(VwLmmModel model, ITokenizer tokenizer, ShapesGridRecipe recipe)
    {
        _model = model;
        _tok = tokenizer;
        _recipe = recipe;
        var words = Enum.GetValues<ObjectColour>().Select(Words.Of)
            .Concat(Enum.GetValues<ObjectShape>().Select(Words.Of))
            .Concat(Enum.GetValues<Background>().Select(Words.Of));
        // Only words that are one token can be a patch's visual word; the BPE vocabulary makes all of them single pieces.
        _content = words.Select(w => (w, Ids: tokenizer.Encode(w, addBos: false)))
                        .Where(x => x.Ids.Length == 1).Select(x => (x.w, x.Ids[0])).ToArray();
        var embed = model.Decoder.EmbedTokens.Value.ToArray();
        int d = model.Config.Llm.HiddenSize;
        _contentEmbeddings = _content.SelectMany(c => embed.AsSpan(c.Id * d, d).ToArray()).ToArray();
        var prompt = Prompt(string.Empty);
        _imageAt = Array.IndexOf(prompt.InputIds, Llava.ImageTokenIndex);
        if (_imageAt < 1) throw new InvalidOperationException("the ShapesGrid template must put a token before the image");
        _patchPrompt = new BatchBuilder(model.Vision.TokensPerImage, int.MaxValue, model.Config.Llm.VocabSize).Build([prompt]);
    }

    public IReadOnlyList<string> ContentWords => _content.Select(c => c.Word).ToArray();

    public ShapesGridResults Evaluate(int images, int batchPrompts = 16)
    {
        var test = Enumerable.Range(0, images).Select(i => _recipe.World.Sample(Split.Test, i)).ToList();
        var predictions = AnswerQuestions(test, batchPrompts);
        var trainDistribution = AnswerQuestions(Enumerable.Range(0, images).Select(i => _recipe.UnseenTrainingSample(i)), batchPrompts);
        int objects = 0, correct = 0, lensCorrect = 0, predictedCorrect = 0, background = 0, backgroundCorrect = 0, agree = 0;
        foreach (var sample in test)
        {
            foreach (var p in VisualWords(sample, topK: 0))
            {
                if (p.IsObject) { objects++; if (p.Correct) correct++; if (p.LensCorrect) lensCorrect++; if (p.PredictedCorrect) predictedCorrect++; }
                else { background++; if (p.Correct) backgroundCorrect++; }
                if (p.PredictionAgrees) agree++;
            }
        }
        double Share(int n, int of) => of == 0 ? 0 : (double)n / of;
        var held = predictions.Where(p => p.InvolvesHeldOut).ToList();
        return new ShapesGridResults(
            ShapesGridResults.Accuracy(predictions), ShapesGridResults.ByKind(predictions),
            held.Count == 0 ? double.NaN : ShapesGridResults.Accuracy(held), predictions.Count,
            Share(correct, objects), _content.Length == 0 ? 0 : 2.0 / _content.Length,
            Share(backgroundCorrect, background), Share(lensCorrect, objects), objects,
            Share(predictedCorrect, objects), Share(agree, objects + background), ContentWords, predictions, trainDistribution);
    }

    /// <summary>Greedy answers to every question about each of <paramref name="samples"/>, <paramref name="batchPrompts"/> prompts at a time.</summary>
    public List<QaPrediction> AnswerQuestions(IEnumerable<ShapesGridSample> samples, int batchPrompts)
    {
        var items = samples.SelectMany(s => s.Questions.Select(qa => (Sample: s, Qa: qa))).ToList();
        var result = new List<QaPrediction>();
        using var gen = new Generator(_model);
        var options = new SamplingOptions { MaxNewTokens = 8, StopIds = [_tok.EosId] };
        for (int start = 0; start < items.Count; start += batchPrompts)
        {
            var chunk = items.Skip(start).Take(batchPrompts).ToList();
            var prompts = chunk.Select(c => Prompt(c.Qa.Question)).ToList();
            var pixels = chunk.SelectMany(c => _recipe.Pixels(c.Sample.Image)).ToArray();
            var outputs = gen.Generate(prompts, pixels, options);
            for (int j = 0; j < chunk.Count; j++)
            {
                var ids = outputs[j].Where(id => id != _tok.EosId).ToArray();
                string predicted = _tok.Decode(ids).Trim();
                var (s, qa) = chunk[j];
                result.Add(new QaPrediction(s.Id, qa.Kind, qa.Question, qa.Answer, predicted, predicted == qa.Answer, qa.InvolvesHeldOut,
                                            NamesAnotherObject(s.Scene, qa, predicted)));
            }
        }
        return result;
    }

    /// <summary>
    /// Whether a wrong answer to a colour or shape question is the colour (shape) of an object in the scene: the decoder
    /// read the wrong object, rather than naming an attribute nothing in the image has.
    /// </summary>
    public static bool NamesAnotherObject(Scene scene, QaPair qa, string predicted) =>
        predicted != qa.Answer && qa.Kind switch
        {
            QuestionKind.Colour => scene.Objects.Any(o => Words.Of(o.Colour) == predicted),
            QuestionKind.Shape => scene.Objects.Any(o => Words.Of(o.Shape) == predicted),
            _ => false,
        };

    /// <summary>The generation prompt for one question about the image.</summary>
    public TokenizedConversation Prompt(string question) =>
        ShapesGridRecipe.Template.EncodePrompt([new Turn(Speaker.Human, Llava.ImagePlaceholder + "\n" + question)], hasImage: true, _tok);

    /// <summary>
    /// Every patch's visual word for one sample, with the top-k words of the whole vocabulary. Words are ranked by their
    /// logits W_vm·x, not by p: a saturated p underflows to 0 for every word but one, which would make the content-word
    /// choice a tie that the first content word wins.
    /// </summary>
    public IReadOnlyList<PatchWord> VisualWords(ShapesGridSample sample, int topK)
    {
        var truth = sample.Scene.PatchWords();
        var (x, logits, predicted) = Patches(sample);
        int grid = _recipe.World.Options.Grid, v = _model.Config.Llm.VocabSize, d = _model.Config.Llm.HiddenSize;
        var lens = new float[_model.Config.Llm.VocabSize];
        var result = new List<PatchWord>();
        for (int j = 0; j < grid * grid; j++)
        {
            var row = logits.AsSpan(j * v, v);
            string best = BestWord(row, _content);
            for (int c = 0; c < _content.Length; c++)
                lens[_content[c].Id] = (float)Dot(_contentEmbeddings.AsSpan(c * d, d), x.AsSpan(j * d, d));
            string lensWord = BestWord(lens, _content);
            var q = predicted.AsSpan(j * v, v);
            string predictedWord = BestWord(q, _content);
            var obj = sample.Scene.ObjectAt(j / grid, j % grid);
            bool Names(string word) => obj is { } o ? word == Words.Of(o.Colour) || word == Words.Of(o.Shape) : word == truth[j];
            result.Add(new PatchWord(j / grid, j % grid, Piece(HostMath.ArgMax(row)), best, TopWords(row, topK), truth[j], obj is not null,
                                     Names(best), lensWord, Names(lensWord), predictedWord, Names(predictedWord),
                                     HostMath.ArgMax(q) == HostMath.ArgMax(row)));
        }
        return result;
    }

    private static double Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++) sum += (double)a[i] * b[i];
        return sum;
    }

    /// <summary>The candidate with the largest logit (the first of equals): the argmax of p restricted to the candidates.</summary>
    public static string BestWord(ReadOnlySpan<float> logits, IReadOnlyList<(string Word, int Id)> candidates)
    {
        int best = -1;
        for (int i = 0; i < candidates.Count; i++)
            if (best < 0 || logits[candidates[i].Id] > logits[candidates[best].Id]) best = i;
        return best < 0 ? "" : candidates[best].Word;
    }

    /// <summary>
    /// One sample's image in the QA prompt layout, through the whole model: projector output x [N_img, d], visual-word
    /// logits W_vm·x [N_img, V] (p = softmax over each row), and the LM-head logits at the position before each image
    /// row [N_img, V] (q_{t−1}, which the visual-word loss pairs with p_t). Causal attention makes the last depend only on
    /// the template and the patches before, so the prompt's question is left empty.
    /// </summary>
    public (float[] Features, float[] Logits, float[] Predicted) Patches(ShapesGridSample sample)
    {
        using var arena = new Arena(_model.Backend, 64L << 20);
        var tape = new Tape(_model.Backend, arena, record: false);
        var c = _model.Config.Vision;
        int v = _model.Config.Llm.VocabSize, n = _model.Vision.TokensPerImage;
        var px = Ops.Input(tape, _recipe.Pixels(sample.Image), 1, c.NumChannels, c.ImageSize, c.ImageSize);
        var output = _model.Forward(tape, _patchPrompt, px, vmLossWeight: 0);
        var x = output.ImageFeatures!;
        var lm = output.Logits.ToArray();
        return (x.ToArray(), _model.VisualWordLogits(tape, x).ToArray(), lm.AsSpan((_imageAt - 1) * v, n * v).ToArray());
    }

    private IReadOnlyList<(string, double)> TopWords(ReadOnlySpan<float> logits, int k) =>
        k <= 0 ? [] : HostMath.TopSoftmax(logits, k).Select(t => (Piece(t.Index), t.P)).ToList();

    private string Piece(int id) => _tok.IdToPiece(id).Replace('▁', ' ').Trim() is { Length: > 0 } s ? s : _tok.IdToPiece(id);
}
