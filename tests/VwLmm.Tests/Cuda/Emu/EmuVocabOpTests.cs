using VwLmm.Core;
using VwLmm.Cuda;
using VwLmm.Tests.Ops;

namespace VwLmm.Tests.Cuda.Emu;

/// <summary>kernels/vocab.cu on the emulator against the shared vocabulary-op suite.</summary>
public sealed class EmuVocabOpTests : VocabOpTests
{
    protected override IBackend CreateBackend() => new CudaBackend(new EmulatedRuntime());
}
