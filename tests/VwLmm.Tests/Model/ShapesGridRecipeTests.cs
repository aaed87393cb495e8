using System.Text.Json;
using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Data.Conversations;
using VwLmm.Data.ShapesGrid;
using VwLmm.Model;
using VwLmm.Model.Recipes;
using VwLmm.Model.Training;

namespace VwLmm.Tests.Model;

/// <summary>The recipe's data sources and the initialisation its decoder starts from.</summary>
public class ShapesGridRecipeTests : CpuFixture
{
    [Test]
    public void VisionProbesAreAlsoScoredOnHeldOutCombinationObjectsAlone()
    {
        var (recipe, tok) = TinyWorld.ShapesGridSeed1;
        using var model = new VwLmmModel(Cpu, recipe.ModelConfig(tok));
        model.InitializeRandom(3);
        using var pretraining = new ShapesGridVisionPretraining(model, recipe, 3);
        const int images = 12;
        // Every test image holds at least one object of a held-out combination, one patch per object.
        int expected = Enumerable.Range(0, images).Sum(i => recipe.World.SceneAt(Split.Test, i).Objects.Count(o => recipe.World.IsHeldOut(o.Combo)));
        var test = pretraining.Evaluate(images);
        Assert.That(expected, Is.GreaterThanOrEqualTo(images));
        Assert.That(test.HeldOutObjectPatches, Is.EqualTo(expected));
        Assert.That(test.HeldOutObjectPatches, Is.LessThan(test.ObjectPatches));
        // Right on held-out objects can be no more than right on all objects.
        Assert.That(test.HeldOutColour * test.HeldOutObjectPatches, Is.LessThanOrEqualTo(test.Colour * test.ObjectPatches + 1e-9));
        Assert.That(test.HeldOutShape * test.HeldOutObjectPatches, Is.LessThanOrEqualTo(test.Shape * test.ObjectPatches + 1e-9));
        var train = pretraining.Evaluate(images, Split.Train);
        Assert.That(train.HeldOutObjectPatches, Is.Zero, "training images hold no held-out combination");
        Assert.That(train.ObjectPatches, Is.GreaterThan(0));
    }

    [Test]
    public void CodesAreTheProbesDecisionsPerPatchInTheGroundTruthLayout()
    {
        var (recipe, tok) = TinyWorld.ShapesGridSeed1;
        using var model = new VwLmmModel(Cpu, recipe.ModelConfig(tok));
        model.InitializeRandom(3);
        using var pretraining = new ShapesGridVisionPretraining(model, recipe, 3);
        pretraining.Train(steps: 20, batchSize: 8, lr: 2e-3);
        const int images = 12;
        int grid = recipe.World.Options.Grid, np = grid * grid;
        var codes = pretraining.Codes(Split.Test, 0, images);
        Assert.That(codes, Has.Length.EqualTo(images * np * 3));
        int objects = 0, colour = 0, shape = 0, ground = 0;
        for (int i = 0; i < images; i++)
        {
            var scene = recipe.World.SceneAt(Split.Test, i);
            for (int j = 0; j < np; j++)
            {
                var (c, s, g) = (codes[(i * np + j) * 3], codes[(i * np + j) * 3 + 1], codes[(i * np + j) * 3 + 2]);
                Assert.That(c, Is.LessThanOrEqualTo(6));
                Assert.That(s, Is.LessThanOrEqualTo(4));
                Assert.That(g, Is.LessThan(4));
                if (g == (int)scene.BackgroundAt(j / grid)) ground++;
                if (scene.ObjectAt(j / grid, j % grid) is not { } o) continue;
                objects++;
                if (c == (int)o.Colour) colour++;
                if (s == (int)o.Shape) shape++;
            }
        }
        // Evaluate scores the same argmax decisions on the same images.
        var accuracy = pretraining.Evaluate(images);
        Assert.That(objects, Is.EqualTo(accuracy.ObjectPatches));
        Assert.That((double)colour / objects, Is.EqualTo(accuracy.Colour).Within(1e-12));
        Assert.That((double)shape / objects, Is.EqualTo(accuracy.Shape).Within(1e-12));
        Assert.That((double)ground / (images * np), Is.EqualTo(accuracy.Background).Within(1e-12));
        Assert.That(pretraining.Codes(Split.Test, 5, 3), Is.EqualTo(codes[(5 * np * 3)..(8 * np * 3)]), "an image's codes do not depend on its batch");
    }

    [Test]
    public void TowerFeaturesAreRegressedOntoTheFactorCodes()
    {
        var (recipe, tok) = TinyWorld.ShapesGridSeed1;
        using var model = new VwLmmModel(Cpu, recipe.ModelConfig(tok));
        model.InitializeRandom(3);
        using var pretraining = new ShapesGridVisionPretraining(model, recipe, 3);
        // Each feature's target is an N(0, 1) entry of one class's code: an untrained tower is about 1 away per entry.
        double before = pretraining.Evaluate(12).CodeError;
        Assert.That(before, Is.GreaterThan(0.8));
        pretraining.Train(steps: 40, batchSize: 8, lr: 2e-3);
        double after = pretraining.Evaluate(12).CodeError;
        Assert.That(after, Is.LessThan(0.5 * before), "the features move towards the sum of their classes' codes");
    }

    /// <summary>"+cells" appends the world's two cell questions to each conversation of the kinds' source.</summary>
    [Test]
    public void QaSourceWithCellsAppendsTheWorldsCellQuestions()
    {
        var (recipe, tok) = TinyWorld.ShapesGridSeed1;
        var cells = recipe.Source("qa:colour,shape+cells", tok);
        var plain = recipe.Source("qa:colour,shape", tok);
        for (int i = 0; i < 40; i++)
        {
            var conv = recipe.World.QaConversation(Split.Train, i, "image", [QuestionKind.Colour, QuestionKind.Shape], cellQuestions: true);
            Assert.That(cells.Get(i).Tokens.InputIds, Is.EqualTo(ShapesGridRecipe.Template.Encode(conv, tok).InputIds), $"sample {i}");
            Assert.That(cells.Get(i).Pixels, Is.EqualTo(plain.Get(i).Pixels), $"sample {i}'s image");
            string text = tok.Decode(cells.Get(i).Tokens.InputIds.Where(t => t >= 0).ToArray());
            Assert.That(text, Does.Contain("what colour is in row").And.Contain("what shape is in row"), $"sample {i}");
        }
    }

    [Test]
    public void SourcesNameTheTemplateTheirConversationsAreEncodedWith()
    {
        var (recipe, tok) = TinyWorld.ShapesGridSeed1;
        Assert.That(recipe.Source("text", tok).Template, Is.Null);
        Assert.That(recipe.Source("captions", tok).Template, Is.SameAs(ConversationTemplate.Plain));
        Assert.That(recipe.Source("qa", tok).Template, Is.SameAs(ConversationTemplate.ShapesChat));
        Assert.That(recipe.Source("qa:colour", tok).Template, Is.SameAs(ConversationTemplate.ShapesChat));
    }

    [Test]
    public void QaSourceWithKindsAsksOnlyThoseKinds()
    {
        var (recipe, tok) = TinyWorld.ShapesGridSeed1;
        var lookup = recipe.Source("qa:colour,shape", tok);
        var all = recipe.Source("qa", tok);
        int otherKinds = 0, allOtherKinds = 0;
        for (int i = 0; i < 200; i++)
        {
            string text = tok.Decode(lookup.Get(i).Tokens.InputIds.Where(t => t >= 0).ToArray());
            Assert.That(lookup.Get(i).Pixels, Is.Not.Null, "every lookup conversation shows its image");
            otherKinds += CountOtherKinds(text);
            allOtherKinds += CountOtherKinds(tok.Decode(all.Get(i).Tokens.InputIds.Where(t => t >= 0).ToArray()));
        }
        // Only scenes that allow no colour or shape question fall back to other kinds: every colour and every shape
        // repeats, or each candidate has a distractor its attribute never comes with in training.
        Assert.That(otherKinds, Is.LessThan(30));
        Assert.That(allOtherKinds, Is.GreaterThan(100));
        var e = Assert.Throws<ArgumentException>(() => recipe.Source("qa:colour,size", tok))!;
        Assert.That(e.Message, Does.Contain("'size'"));
        e = Assert.Throws<ArgumentException>(() => recipe.Source("qa:colour,size+cells", tok))!;
        Assert.That(e.Message, Does.Contain("'size'"));
        e = Assert.Throws<ArgumentException>(() => recipe.Source("qa:colour+cellz", tok))!;
        Assert.That(e.Message, Does.Contain("'colour+cellz'"));

        static int CountOtherKinds(string text) =>
            new[] { "how many", "is there", "what is in row" }.Sum(q => (text.Length - text.Replace(q, "").Length) / q.Length);
    }

    /// <summary>
    /// The answer prior reads Tokens, training reads Get: both must give the same conversation (for "qa", the world's
    /// sample's own), and Get its rendered image.
    /// </summary>
    [TestCase("qa")]
    [TestCase("qa:colour,shape")]
    [TestCase("qa:colour,shape+cells")]
    public void QaSourceTokensAndPixelsAreTheSamples(string name)
    {
        var (recipe, tok) = TinyWorld.ShapesGridSeed1;
        var source = recipe.Source(name, tok);
        int images = 0;
        for (int i = 0; i < 60; i++)
        {
            var example = source.Get(i);
            var tokens = source.Tokens(i);
            Assert.That(tokens.InputIds, Is.EqualTo(example.Tokens.InputIds), $"ids of {i}");
            Assert.That(tokens.Labels, Is.EqualTo(example.Tokens.Labels), $"labels of {i}");
            if (example.Pixels is null) continue;
            images++;
            var sample = recipe.World.Sample(Split.Train, i);
            Assert.That(example.Pixels, Is.EqualTo(recipe.Pixels(sample.Image)), $"pixels of {i}");
            if (name == "qa")
                Assert.That(tokens.InputIds, Is.EqualTo(ShapesGridRecipe.Template.Encode(sample.QaConversation("image"), tok).InputIds), $"sample {i}'s questions");
        }
        Assert.That(images, Is.GreaterThan(50));
    }

    /// <summary>A QA source's twin is the world's, rendered; "qa" has none for its text-only samples.</summary>
    [TestCase("qa")]
    [TestCase("qa:colour,shape")]
    public void QaSourceTwinsAreTheWorldsTwinsRendered(string name)
    {
        var (recipe, tok) = TinyWorld.ShapesGridSeed1;
        var source = recipe.Source(name, tok);
        QuestionKind[] kinds = name == "qa" ? Enum.GetValues<QuestionKind>() : [QuestionKind.Colour, QuestionKind.Shape];
        int twins = 0, textOnly = 0;
        for (int i = 0; i < 80; i++)
        {
            var twin = source.Twin(i);
            if (name == "qa" && recipe.World.IsTextOnly(Split.Train, i))
            {
                Assert.That(twin, Is.Null, $"text-only sample {i}");
                textOnly++;
                continue;
            }
            var expected = recipe.World.Twin(i, "image", kinds);
            Assert.That(twin is null, Is.EqualTo(expected is null), $"sample {i}");
            if (twin is null || expected is null) continue;
            twins++;
            Assert.That(twin.Answer, Is.EqualTo(expected.Question));
            Assert.That(twin.Example.Tokens.InputIds, Is.EqualTo(ShapesGridRecipe.Template.Encode(expected.Conversation, tok).InputIds));
            Assert.That(twin.Example.Pixels, Is.EqualTo(recipe.Pixels(recipe.World.Render(expected.Scene))));
        }
        Assert.That(twins, Is.GreaterThan(10));
        if (name == "qa") Assert.That(textOnly, Is.GreaterThan(0));
    }

    [Test]
    public void UnseenTrainingSamplesComeFromTheTrainingDistributionPastEveryIndexTrainingReads()
    {
        var (recipe, tok) = TinyWorld.ShapesGridSeed1;
        long sources = new[] { "text", "captions", "qa", "qa:colour,shape" }.Max(n => recipe.Source(n, tok).Count);
        // The vision pretraining reads images 0 … steps × batch − 1; a budget a hundred times the default's stays short.
        long vision = 100L * ShapesGridBudget.Default.VisionSteps * ShapesGridBudget.VisionBatchSize;
        for (int i = 0; i < 50; i++)
        {
            var s = recipe.UnseenTrainingSample(i);
            Assert.That(s.Split, Is.EqualTo(VwLmm.Data.ShapesGrid.Split.Train));
            Assert.That(s.Index, Is.GreaterThan(Math.Max(sources, vision)));
            Assert.That(s.Scene.Objects.Any(o => recipe.World.IsHeldOut(o.Combo)), Is.False, s.Id);
        }
        Assert.That(recipe.UnseenTrainingSample(1).Scene.Objects, Is.Not.EqualTo(recipe.UnseenTrainingSample(0).Scene.Objects));
    }

    // METHOD §7.3: each variant changes exactly its one setting of B (forward KL, not detached, λ 1, VM head from E);
    // G changes three: pif on, a random VM head, λ 0.1.
    [TestCase(ShapesGridVariant.VwLmm, 1.0, false, false, KlDirection.Forward, VmHeadInit.EmbedTokens)]
    [TestCase(ShapesGridVariant.Baseline, 0.0, false, false, KlDirection.Forward, VmHeadInit.EmbedTokens)]
    [TestCase(ShapesGridVariant.Detach, 1.0, true, false, KlDirection.Forward, VmHeadInit.EmbedTokens)]
    [TestCase(ShapesGridVariant.Pif, 1.0, false, true, KlDirection.Forward, VmHeadInit.EmbedTokens)]
    [TestCase(ShapesGridVariant.Reverse, 1.0, false, false, KlDirection.Reverse, VmHeadInit.EmbedTokens)]
    [TestCase(ShapesGridVariant.LmHead, 1.0, false, false, KlDirection.Forward, VmHeadInit.LmHead)]
    [TestCase(ShapesGridVariant.PifFrozenHead, 0.1, false, true, KlDirection.Forward, VmHeadInit.Random)]
    [TestCase(ShapesGridVariant.Twins, 1.0, false, false, KlDirection.Forward, VmHeadInit.EmbedTokens)]
    public void EachVariantChangesItsOneSetting(ShapesGridVariant variant, double lambda, bool detach, bool pif, KlDirection kl, VmHeadInit init)
    {
        var (recipe, tok) = TinyWorld.ShapesGridSeed1;
        var c = recipe.ModelConfig(tok, variant);
        Assert.That((c.VmLossWeight, c.VmDetachTarget, c.UsePif, c.VmKlDirection, c.VmHeadInit), Is.EqualTo((lambda, detach, pif, kl, init)));
    }

    /// <summary>
    /// The lookup stage trains the LLM and the VM head (recipe version 9): two of its steps leave the projector's (and
    /// the tower's) weights as initialised, bit for bit, and move the LLM's. (The VM head is re-initialised as the stage
    /// starts, so its moving would show nothing; the stage's groups are asserted instead.)
    /// </summary>
    [Test]
    public void TheLookupStageLeavesTheProjectorAsInitialised()
    {
        var (recipe, tok) = TinyWorld.ShapesGridSeed1;
        foreach (var budget in new[] { ShapesGridBudget.Default, ShapesGridBudget.Quick })
            Assert.That(recipe.TrainConfig(budget, 1).Stages.Single().Trainable, Is.EqualTo(new[] { ParameterGroup.Llm, ParameterGroup.VmHead }));
        var stage = recipe.TrainConfig(ShapesGridBudget.Quick, 1).Stages.Single() with { Steps = 2, BatchSize = 4, AnswerPriorSamples = 64, EmaDecay = 0 };
        var cfg = VwLmmConfig.Presets.Tiny with { Llm = VwLmmConfig.Presets.Tiny.Llm with { VocabSize = tok.VocabSize, MaxPositionEmbeddings = 128 } };
        using var m = TinyWorld.Model(Cpu, cfg, seed: 3);
        var before = m.Parameters.All.ToDictionary(p => p.Name, p => p.Value.ToArray());
        using (var t = new Trainer(m, new TrainConfig { Seed = 2, MaxLength = 128, Stages = [stage] }, name => recipe.Source(name, tok), 64 << 20, tok))
            t.Run(null, CancellationToken.None);
        foreach (var p in m.Parameters.All)
        {
            var group = ParameterStore.GroupOf(p.Name);
            if (group is ParameterGroup.Projector or ParameterGroup.Vision)
                Assert.That(p.Value.ToArray(), Is.EqualTo(before[p.Name]), $"{p.Name} moved");
        }
        Assert.That(m.Parameters.InGroup(ParameterGroup.Llm).Any(p => !p.Value.ToArray().SequenceEqual(before[p.Name])), Is.True, "no LLM weight moved");
    }

    [TestCase(ShapesGridStages.Lookup)]
    [TestCase(ShapesGridStages.Llava)]
    public void OnlyTheFrozenHeadVariantLeavesTheVmHeadOutOfEveryStage(ShapesGridStages stages)
    {
        var (recipe, _) = TinyWorld.ShapesGridSeed1;
        var released = recipe.TrainConfig(ShapesGridBudget.Quick, 1, stages: stages);
        var frozen = recipe.TrainConfig(ShapesGridBudget.Quick, 1, stages: stages, variant: ShapesGridVariant.PifFrozenHead);
        Assert.That(released.Stages.Any(s => s.Trainable.Contains(ParameterGroup.VmHead)), Is.True);
        Assert.That(frozen.Stages.Select(s => s.Trainable), Is.EqualTo(released.Stages.Select(s => s.Trainable.Where(g => g != ParameterGroup.VmHead))));
        Assert.That(frozen.Stages.Select(s => (s.Name, s.Data, s.Steps, s.Lr, s.InitVmHead)),
                    Is.EqualTo(released.Stages.Select(s => (s.Name, s.Data, s.Steps, s.Lr, s.InitVmHead))));
        foreach (var v in Enum.GetValues<ShapesGridVariant>().Where(v => v != ShapesGridVariant.PifFrozenHead))
            Assert.That(recipe.TrainConfig(ShapesGridBudget.Quick, 1, stages: stages, variant: v).Stages.Select(s => s.Trainable),
                        Is.EqualTo(released.Stages.Select(s => s.Trainable)), v.ToString());
    }

    [TestCase(ShapesGridStages.Lookup)]
    [TestCase(ShapesGridStages.Llava)]
    public void OnlyTheTwinsVariantGivesTwinsAndOnlyToStagesWithAnAnswerPrior(ShapesGridStages stages)
    {
        var (recipe, _) = TinyWorld.ShapesGridSeed1;
        var twins = recipe.TrainConfig(ShapesGridBudget.Quick, 1, answerPrior: true, stages: stages, variant: ShapesGridVariant.Twins);
        var released = recipe.TrainConfig(ShapesGridBudget.Quick, 1, answerPrior: true, stages: stages);
        Assert.That(twins.Stages.Select(s => s.TwinWeight), Is.EqualTo(twins.Stages.Select(s => s.AnswerPrior is null ? 0 : ShapesGridRecipe.TwinLossWeight)));
        Assert.That(twins.Stages.Count(s => s.TwinWeight > 0), Is.EqualTo(1), "instruction tuning");
        Assert.That(twins.Stages.Select(s => JsonSerializer.Serialize(s with { TwinWeight = 0 })), Is.EqualTo(released.Stages.Select(s => JsonSerializer.Serialize(s))));
        Assert.That(recipe.TrainConfig(ShapesGridBudget.Quick, 1, answerPrior: false, stages: stages, variant: ShapesGridVariant.Twins).Stages.Select(s => s.TwinWeight), Is.All.Zero);
        foreach (var v in Enum.GetValues<ShapesGridVariant>().Where(v => v != ShapesGridVariant.Twins))
            Assert.That(recipe.TrainConfig(ShapesGridBudget.Quick, 1, answerPrior: true, stages: stages, variant: v).Stages.Select(s => s.TwinWeight), Is.All.Zero, v.ToString());
    }

    /// <summary>
    /// The lookup source's twins train beside their examples: the logged loss adds their term. A source whose twins are
    /// its examples themselves pays nothing for them and trains as without twins (a duplicate leaves every mean as it
    /// was), so the pairs join the right rows.
    /// </summary>
    [Test]
    public void TwinsTrainBesideTheirExamplesAndATwinThatIsItsExampleCostsNothing()
    {
        var (recipe, tok) = TinyWorld.ShapesGridSeed1;
        var source = recipe.Source("qa:colour,shape", tok);
        var cfg = VwLmmConfig.Presets.Tiny with { Llm = VwLmmConfig.Presets.Tiny.Llm with { VocabSize = tok.VocabSize, MaxPositionEmbeddings = 128 } };
        List<StepMetrics> Run(ITrainingSource src, double twinWeight)
        {
            var stage = new StageConfig
            {
                Name = "instruct", Data = "qa:colour,shape", Trainable = [ParameterGroup.Projector, ParameterGroup.Llm, ParameterGroup.VmHead],
                Steps = 3, Lr = 1e-3, BatchSize = 4, AnswerPrior = ShapesGridRecipe.AnswerPriorClasses, AnswerPriorSamples = 64, TwinWeight = twinWeight,
            };
            using var m = TinyWorld.Model(Cpu, cfg, seed: 3);
            using var t = new Trainer(m, new TrainConfig { Seed = 2, MaxLength = 128, Stages = [stage] }, _ => src, 64 << 20, tok);
            var steps = new List<StepMetrics>();
            t.OnStep = steps.Add;
            t.Run(null, CancellationToken.None);
            return steps;
        }
        var twins = Run(source, 0.5);
        Assert.That(twins.Select(m => m.LossTwin), Is.All.GreaterThan(0));
        foreach (var m in twins) Assert.That(m.Loss, Is.EqualTo(m.LossText + m.LossVm + m.LossTwin!.Value).Within(1e-12));
        var plain = Run(source, 0);
        Assert.That(plain.Select(m => m.LossTwin), Is.All.Null);
        var selves = Run(new SelfTwins(source), 0.5);
        for (int i = 0; i < plain.Count; i++)
        {
            Assert.That(selves[i].LossTwin, Is.EqualTo(0).Within(1e-12), $"step {i + 1}");
            Assert.That(selves[i].LossText, Is.EqualTo(plain[i].LossText).Within(1e-5 * plain[i].LossText), $"L_text, step {i + 1}");
            Assert.That(selves[i].LossVm, Is.EqualTo(plain[i].LossVm).Within(1e-5 * plain[i].LossVm), $"L_vm, step {i + 1}");
        }
        Assert.That(twins[^1].LossText, Is.Not.EqualTo(plain[^1].LossText).Within(1e-3 * plain[^1].LossText), "real twins train otherwise");
    }

    /// <summary>Every example its own twin.</summary>
    private sealed class SelfTwins(ITrainingSource inner) : ITrainingSource
    {
        public int Count => inner.Count;
        public TrainingExample Get(int index) => inner.Get(index);
        public TokenizedConversation Tokens(int index) => inner.Tokens(index);
        public ConversationTemplate? Template => inner.Template;
        public TwinExample? Twin(int index) => new(inner.Get(index), 0);
    }

    [Test]
    public void TorchSchemeDrawsPyTorchDefaultsOutsideTheTower()
    {
        using var hf = new VwLmmModel(Cpu, TinyWorld.Config());
        using var torch = new VwLmmModel(Cpu, TinyWorld.Config());
        hf.InitializeRandom(3);
        torch.InitializeRandom(3, InitScheme.Torch);
        foreach (var (a, b) in hf.Parameters.All.Zip(torch.Parameters.All))
        {
            var x = Host(hf, a);
            var y = Host(torch, b);
            string n = a.Name;
            if (ParameterStore.GroupOf(n) == ParameterGroup.Vision || a.Shape.Rank < 2 && !n.EndsWith("embed_tokens.weight"))
            {
                if (ParameterStore.GroupOf(n) == ParameterGroup.Vision && a.Shape.Rank >= 2)
                    Assert.That(Std(y), Is.EqualTo(0.02).Within(0.004), n + ": the tower keeps HF's initialisation");
                if (ParameterStore.GroupOf(n) != ParameterGroup.Vision) Assert.That(y, Is.EqualTo(x), n + ": gains and biases do not depend on the scheme");
                continue;
            }
            Assert.That(Std(x), Is.EqualTo(0.02).Within(0.004), n);
            if (n == "model.embed_tokens.weight")
                Assert.That(Std(y), Is.EqualTo(1).Within(0.1), n);
            else if (n != "vm_head.weight" || torch.Config.VmHeadInit == VmHeadInit.Random)
            {
                double bound = 1 / Math.Sqrt(a.Shape[1]);
                Assert.That(y.Max(v => Math.Abs(v)), Is.LessThanOrEqualTo(bound).And.GreaterThan(0.9 * bound), n);
                Assert.That(Std(y), Is.EqualTo(bound / Math.Sqrt(3)).Within(0.15 * bound), n);
            }
        }
    }

    private static float[] Host(VwLmmModel m, Parameter p)
    {
        var h = new float[p.Numel];
        m.Backend.Download<float>(p.Value, h);
        return h;
    }

    private static double Std(float[] x)
    {
        double mean = x.Average(v => (double)v);
        return Math.Sqrt(x.Sum(v => (v - mean) * (v - mean)) / x.Length);
    }
}
