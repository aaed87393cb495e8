using System.Reflection;
using System.Runtime.ExceptionServices;
using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cpu;
using VwLmm.Model;

namespace VwLmm.Tests.Model;

/// <summary>A model whose parameters do not fit: one message with the count and size, and nothing left allocated.</summary>
public class ModelMemoryTests
{
    /// <summary>A backend that hands out memory until a budget is spent, then fails as an exhausted allocator does; it
    /// keeps every buffer it gave out.</summary>
    public class RationedBackend : DispatchProxy
    {
        public IBackend Inner { get; set; } = null!;
        public long Left { get; set; }
        public List<DeviceBuffer> Given { get; } = [];

        protected override object? Invoke(MethodInfo? method, object?[]? args)
        {
            if (method!.Name == nameof(IBackend.Allocate))
            {
                long bytes = (long)args![0]!;
                if (bytes > Left) throw new OutOfMemoryException();
                Left -= bytes;
            }
            try
            {
                object? result = method.Invoke(Inner, args);
                if (result is DeviceBuffer b) Given.Add(b);
                return result;
            }
            catch (TargetInvocationException e)
            {
                ExceptionDispatchInfo.Throw(e.InnerException!);
                throw;
            }
        }
    }

    [Test]
    public void AModelThatDoesNotFitIsOneMessageAndFreesWhatItTook()
    {
        using var cpu = new CpuBackend(1);
        var backend = DispatchProxy.Create<IBackend, RationedBackend>();
        var ration = (RationedBackend)(object)backend;
        ration.Inner = cpu;
        var config = VwLmmConfig.Presets.Tiny;
        // Every parameter of the tiny preset is F32: a budget of half their bytes runs out part way.
        double mib = config.ParameterCount() * 4.0 / (1 << 20);
        ration.Left = config.ParameterCount() * 2;
        var ex = Assert.Throws<InsufficientMemoryException>(() => new VwLmmModel(backend, config));
        Assert.That(ex!.Message, Is.EqualTo($"the model's {config.ParameterCount():N0} parameters ({mib:N1} MiB) do not fit in the cpu backend's memory"));
        Assert.That(ration.Given, Is.Not.Empty);
        Assert.That(ration.Given.All(b => b.IsDisposed), Is.True, "the parameters allocated before the failure are freed");
    }
}
