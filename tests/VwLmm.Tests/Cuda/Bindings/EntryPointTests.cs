using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using NUnit.Framework;
using VwLmm.Core;
using VwLmm.Cuda.Native;

namespace VwLmm.Tests.Cuda.Bindings;

/// <summary>Every [LibraryImport] of a binding names a symbol its library exports (run for each library installed here).</summary>
public class EntryPointTests
{
    private static IEnumerable<TestCaseData> Bindings()
    {
        yield return new TestCaseData(typeof(Driver)).SetArgDisplayNames("Driver");
        yield return new TestCaseData(typeof(Cublas)).SetArgDisplayNames("Cublas");
        yield return new TestCaseData(typeof(Nvrtc)).SetArgDisplayNames("Nvrtc");
        yield return new TestCaseData(typeof(Nvtx)).SetArgDisplayNames("Nvtx");
    }

    [TestCaseSource(nameof(Bindings))]
    public void EveryImportIsExported(Type binding)
    {
        RuntimeHelpers.RunClassConstructor(binding.TypeHandle); // registers the library's file names
        var imports = binding.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic)
            .Select(m => (Method: m, Import: m.GetCustomAttribute<LibraryImportAttribute>()))
            .Where(x => x.Import != null)
            .ToArray();
        Assert.That(imports, Is.Not.Empty);
        var library = imports[0].Import!.LibraryName;
        var handle = NativeLibraries.TryLoad(binding.Assembly, library);
        if (handle == 0) Assert.Ignore($"{library} is not installed on this machine");
        var missing = imports.Select(x => x.Import!.EntryPoint ?? x.Method.Name)
                             .Where(name => !NativeLibrary.TryGetExport(handle, name, out _));
        Assert.That(missing, Is.Empty);
    }
}
