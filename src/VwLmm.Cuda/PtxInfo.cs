using System.Text.RegularExpressions;

namespace VwLmm.Cuda;

/// <summary>How a kernel parameter is passed. PTX cannot tell a pointer from a 64-bit integer (both are .u64), nor a
/// signed from an unsigned int (NVVM writes .u32 for both).</summary>
public enum PtxParamKind { Int8, Int16, Int32, Int64OrPointer, Float32, Float64, Struct }

/// <summary>One <c>.param</c> of an entry: its kind, size and alignment in bytes, and its PTX declaration.</summary>
public sealed record PtxParam(string Name, PtxParamKind Kind, int Size, int Align, string Declaration);

/// <summary>One <c>.entry</c> (an extern "C" __global__ kernel) with its parameters in launch order.</summary>
public sealed record PtxEntry(string Name, IReadOnlyList<PtxParam> Params);

/// <summary>Reads kernel signatures out of PTX text, to check the argument lists that launchers pack against them.</summary>
public static partial class PtxInfo
{
    /// <summary>Every <c>.entry name(.param …, …)</c> of <paramref name="ptx"/>, in file order.</summary>
    public static IReadOnlyList<PtxEntry> Parse(string ptx)
    {
        var entries = new List<PtxEntry>();
        foreach (Match m in EntryRegex().Matches(ptx))
        {
            string name = m.Groups[1].Value;
            string list = m.Groups[2].Value;
            var parameters = new List<PtxParam>();
            foreach (var raw in list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
                parameters.Add(ParseParam(name, raw));
            entries.Add(new PtxEntry(name, parameters));
        }
        return entries;
    }

    // ".param [.align N] .type [.ptr [.space] [.align N]] name[[N]]"; the .ptr attributes appear in LLVM-written PTX.
    private static PtxParam ParseParam(string entry, string declaration)
    {
        var tokens = declaration.Split((char[])[' ', '\t', '\r', '\n'], StringSplitOptions.RemoveEmptyEntries);
        if (tokens.Length < 3 || tokens[0] != ".param")
            throw new InvalidDataException($"PTX entry {entry}: cannot parse parameter '{declaration}'");
        int align = 0;
        string? type = null;
        for (int i = 1; i < tokens.Length - 1; i++)
        {
            if (tokens[i] == ".align") align = Number(entry, tokens[++i], declaration);
            else if (tokens[i] is ".ptr" or ".global" or ".const" or ".local" or ".shared") { }
            else if (tokens[i].StartsWith('.') && type == null) type = tokens[i][1..];
            else throw new InvalidDataException($"PTX entry {entry}: unexpected '{tokens[i]}' in parameter '{declaration}'");
        }
        if (type == null) throw new InvalidDataException($"PTX entry {entry}: parameter '{declaration}' has no type");

        string name = tokens[^1];
        int elementSize = TypeSize(entry, type);
        int bracket = name.IndexOf('[');
        if (bracket >= 0)
        {
            if (!name.EndsWith(']')) throw new InvalidDataException($"PTX entry {entry}: malformed parameter '{declaration}'");
            int count = Number(entry, name[(bracket + 1)..^1], declaration);
            return new PtxParam(name[..bracket], PtxParamKind.Struct, elementSize * count, align == 0 ? elementSize : align, declaration);
        }
        var kind = type switch
        {
            "u8" or "s8" or "b8" => PtxParamKind.Int8,
            "u16" or "s16" or "b16" or "f16" or "bf16" => PtxParamKind.Int16,
            "u32" or "s32" or "b32" => PtxParamKind.Int32,
            "u64" or "s64" or "b64" => PtxParamKind.Int64OrPointer,
            "f32" => PtxParamKind.Float32,
            "f64" => PtxParamKind.Float64,
            _ => throw new InvalidDataException($"PTX entry {entry}: unknown parameter type .{type}"),
        };
        return new PtxParam(name, kind, elementSize, align == 0 ? elementSize : align, declaration);
    }

    private static int Number(string entry, string text, string declaration) =>
        int.TryParse(text, out int n) && n > 0 ? n : throw new InvalidDataException($"PTX entry {entry}: bad number '{text}' in parameter '{declaration}'");

    private static int TypeSize(string entry, string type) => type.TrimStart('u', 's', 'b', 'f') switch
    {
        "8" => 1,
        "16" => 2,
        "32" => 4,
        "64" => 8,
        _ => throw new InvalidDataException($"PTX entry {entry}: unknown parameter type .{type}"),
    };

    // Anchored at a line start, so a commented-out directive ("// .visible .entry …") never matches.
    [GeneratedRegex(@"^[ \t]*(?:\.visible[ \t]+|\.weak[ \t]+)?\.entry[ \t]+([A-Za-z_$][\w$]*)\s*\(([^)]*)\)", RegexOptions.Multiline)]
    private static partial Regex EntryRegex();
}
