using VwLmm.Data.Images;

namespace VwLmm.Cli.Reports;

/// <summary>How a patch's visual word compares with the ground truth: it names the patch's colour or shape, it names
/// something else, the patch is background, or there is no ground truth (any image).</summary>
public enum CellVerdict { Correct, Wrong, Background, Unknown }

/// <summary>One patch: its argmax visual word, the top-k words with probabilities, and the verdict.</summary>
public sealed record MapCell(string Word, IReadOnlyList<(string Word, double P)> Top, CellVerdict Verdict, string? Truth);

/// <summary>An image with one cell per ViT patch (Grid × Grid, row-major), as in the VW-LMM paper's visualisation.</summary>
public sealed record VisualWordMap(string Title, RgbImage Image, int Grid, IReadOnlyList<MapCell> Cells);
