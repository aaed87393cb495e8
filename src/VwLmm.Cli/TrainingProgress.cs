using System.Globalization;
using Spectre.Console;
using VwLmm.Model.Training;

namespace VwLmm.Cli;

/// <summary>
/// Shows training as it goes: a Spectre.Console progress bar per stage (loss, L_vm, tokens/s, ETA) on a terminal,
/// plain lines otherwise (CI logs, pipes), nothing with --quiet.
/// </summary>
public sealed class TrainingProgress : IDisposable
{
    private readonly TextWriter _out;
    private readonly bool _quiet;
    private readonly bool _interactive;
    private readonly int _every;
    private readonly DateTime _start = DateTime.UtcNow;
    private ProgressContext? _ctx;
    private ProgressTask? _task;
    private string _stage = "";
    private Task? _loop;
    private readonly TaskCompletionSource _done = new();
    private readonly TaskCompletionSource<ProgressContext> _ready = new();

    public TrainingProgress(TextWriter stdout, bool quiet, int plainEvery = 10)
    {
        _out = stdout;
        _quiet = quiet;
        _every = plainEvery;
        _interactive = !quiet && ReferenceEquals(stdout, Console.Out) && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
        if (_interactive)
        {
            _loop = AnsiConsole.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .StartAsync(async ctx =>
                {
                    _ready.SetResult(ctx);
                    await _done.Task;
                });
            _ctx = _ready.Task.Result;
        }
    }

    public void Report(StepMetrics m) => Report(m.Branch > 0 ? $"{m.Stage}, branch {m.Branch + 1}" : m.Stage, m.StageStep, m.StageSteps, m.GlobalStep, m.TotalSteps,
        string.Create(CultureInfo.InvariantCulture, $"loss {m.Loss:0.000}  L_text {m.LossText:0.000}  L_vm {m.LossVm:0.000}{(m.LossTwin is { } twin ? $"  L_twin {twin:0.000}" : "")}  {m.TokensPerSecond:0} tok/s"));

    /// <summary>One step of any stage; <paramref name="measures"/> is what the stage has to say about it.</summary>
    public void Report(string stage, int stageStep, int stageSteps, int globalStep, int totalSteps, string measures)
    {
        if (_quiet) return;
        string text = $"{stage} {stageStep}/{stageSteps}  {measures}";
        if (_interactive)
        {
            if (_stage != stage || _task is null)
            {
                _task?.StopTask();
                _stage = stage;
                _task = _ctx!.AddTask(stage, maxValue: stageSteps);
            }
            _task.Value = stageStep;
            _task.Description = Markup.Escape(text);
            return;
        }
        if (stageStep % _every == 0 || stageStep == stageSteps || stageStep == 1)
        {
            double elapsed = (DateTime.UtcNow - _start).TotalSeconds;
            double eta = globalStep == 0 ? 0 : elapsed / globalStep * (totalSteps - globalStep);
            _out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[{globalStep}/{totalSteps}] {text}  eta {eta:0}s"));
        }
    }

    public void Dispose()
    {
        _task?.StopTask();
        _done.TrySetResult();
        _loop?.Wait();
    }
}
