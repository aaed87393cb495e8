using System.Reflection;
using System.Runtime.InteropServices;

namespace VwLmm.Core;

/// <summary>
/// Maps the logical library names used in [LibraryImport] to the versioned file names Linux distributions ship
/// (libopenblas.so.0, libcuda.so.1, libnvrtc.so.11.2, …), trying each candidate in order. One resolver per assembly.
/// </summary>
public static class NativeLibraries
{
    private static readonly Dictionary<Assembly, Dictionary<string, string[]>> Tables = new();
    private static readonly Dictionary<string, nint> Loaded = new();

    public static void Register(Assembly assembly, string logicalName, params string[] candidates)
    {
        lock (Tables)
        {
            if (!Tables.TryGetValue(assembly, out var table))
            {
                table = new Dictionary<string, string[]>();
                Tables[assembly] = table;
                NativeLibrary.SetDllImportResolver(assembly, Resolve);
            }
            table[logicalName] = candidates;
        }
    }

    /// <summary>Loads a registered library or returns 0 when none of its candidates exists.</summary>
    public static nint TryLoad(Assembly assembly, string logicalName)
    {
        lock (Tables)
        {
            if (Loaded.TryGetValue(logicalName, out var h)) return h;
            if (!Tables.TryGetValue(assembly, out var table) || !table.TryGetValue(logicalName, out var candidates)) return 0;
            foreach (var c in candidates)
                if (NativeLibrary.TryLoad(c, out h)) { Loaded[logicalName] = h; return h; }
            return 0;
        }
    }

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        var h = TryLoad(assembly, name);
        if (h == 0 && Tables.TryGetValue(assembly, out var t) && t.TryGetValue(name, out var candidates))
            throw new DllNotFoundException($"native library '{name}' not found (tried {string.Join(", ", candidates)})");
        return h;
    }
}
