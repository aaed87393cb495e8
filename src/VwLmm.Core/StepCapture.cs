namespace VwLmm.Core;

/// <summary>
/// A backend that can record the work a step queues and replay it without running the host code that queued it (CUDA
/// graphs): a decoded token's ~50 launches become one. A replay reads whatever the step's buffers hold at the time, so
/// what changes from step to step (token ids, positions, cache slots) must live in device memory the step only reads,
/// uploaded before each replay. While recording, nothing runs, and nothing may be copied to or from the host.
/// </summary>
public interface IStepCapture
{
    /// <summary>Runs <paramref name="step"/> with the backend recording instead of executing → the recording.</summary>
    ICapturedStep Capture(Action step);
}

/// <summary>A recorded step. Buffers it touches must outlive it and keep their addresses.</summary>
public interface ICapturedStep : IDisposable
{
    /// <summary>Queues the recorded work again, in order, after everything queued before.</summary>
    void Replay();
}
