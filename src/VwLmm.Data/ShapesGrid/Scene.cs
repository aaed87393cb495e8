namespace VwLmm.Data.ShapesGrid;

public enum ObjectColour { Red, Green, Blue, Yellow, White, Purple }

public enum ObjectShape { Circle, Square, Triangle, Cross }

public enum Background { Sky, Grass, Water, Sand }

public enum ObjectSize { Small, Large }

public enum Split { Train, Test }

public enum QuestionKind { Colour, Shape, Count, Existence, Position }

/// <summary>A colour×shape combination; the unit of the held-out split.</summary>
public readonly record struct Combo(ObjectColour Colour, ObjectShape Shape)
{
    public override string ToString() => $"{Words.Of(Colour)} {Words.Of(Shape)}";
}

/// <summary>An object filling one grid cell (row, column 0-based from the top left).</summary>
public readonly record struct GridObject(int Row, int Column, ObjectColour Colour, ObjectShape Shape, ObjectSize Size)
{
    public Combo Combo => new(Colour, Shape);
}

/// <summary>One question with its short answer; <paramref name="InvolvesHeldOut"/> when it is about a held-out combination;
/// <paramref name="Subject"/>: the object a colour or shape question asks about.</summary>
public sealed record QaPair(QuestionKind Kind, string Question, string Answer, bool InvolvesHeldOut, GridObject? Subject = null);

/// <summary>
/// The ground truth of one image: a Grid×Grid board whose rows above <see cref="Horizon"/> are sky and the rest
/// <see cref="Ground"/>, with objects in distinct cells (reading order). <see cref="Seed"/> drives pixel noise and questions.
/// </summary>
public sealed class Scene
{
    /// <summary>Streams under <see cref="Seed"/>: the questions asked about the scene, its pixel noise, its twin's change
    /// (<see cref="ShapesGridWorld.Twin"/>), and the objects its cell questions ask about (the scratch build that measured
    /// them drew from stream 99).</summary>
    internal const ulong QuestionStream = 1, PixelStream = 2, TwinStream = 3, CellQuestionStream = 99;

    public Scene(int grid, int horizon, Background ground, IReadOnlyList<GridObject> objects, ulong seed)
    {
        if (grid <= 0 || horizon < 0 || horizon > grid) throw new ArgumentException($"horizon {horizon} outside a {grid}-row board");
        var cells = new HashSet<int>();
        foreach (var o in objects)
            if ((uint)o.Row >= (uint)grid || (uint)o.Column >= (uint)grid || !cells.Add(o.Row * grid + o.Column))
                throw new ArgumentException($"object at ({o.Row}, {o.Column}) is off the {grid}×{grid} board or shares its cell", nameof(objects));
        Grid = grid;
        Horizon = horizon;
        Ground = ground;
        Objects = objects;
        Seed = seed;
    }

    public int Grid { get; }
    public int Horizon { get; }
    public Background Ground { get; }
    public IReadOnlyList<GridObject> Objects { get; }
    public ulong Seed { get; }

    public Background BackgroundAt(int row) => row < Horizon ? Background.Sky : Ground;

    public GridObject? ObjectAt(int row, int column)
    {
        foreach (var o in Objects)
            if (o.Row == row && o.Column == column) return o;
        return null;
    }

    /// <summary>What a cell shows: "red circle" for an object cell, the background word otherwise.</summary>
    public string CellWords(int row, int column) =>
        ObjectAt(row, column) is { } o ? o.Combo.ToString() : Words.Of(BackgroundAt(row));

    /// <summary>[Grid·Grid] per-patch ground truth, row-major (the ViT patch order).</summary>
    public string[] PatchWords()
    {
        var words = new string[Grid * Grid];
        for (int r = 0; r < Grid; r++)
            for (int c = 0; c < Grid; c++)
                words[r * Grid + c] = CellWords(r, c);
        return words;
    }
}

/// <summary>The words of the ShapesGrid language.</summary>
public static class Words
{
    private static readonly string[] Numbers = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];

    public static string Of(ObjectColour c) => c.ToString().ToLowerInvariant();
    public static string Of(ObjectShape s) => s.ToString().ToLowerInvariant();
    public static string Of(Background b) => b.ToString().ToLowerInvariant();
    public static string Of(ObjectSize s) => s.ToString().ToLowerInvariant();
    public static string Plural(ObjectShape s) => s == ObjectShape.Cross ? "crosses" : Of(s) + "s";
    /// <summary>A cell as the questions and sentences name it, 1-based: "row 2 column 3".</summary>
    public static string Cell(int row, int column) => $"row {row + 1} column {column + 1}";
    /// <summary>Number word used in captions ("two blue squares"); answers use digits.</summary>
    public static string Number(int n) => Numbers[n];
    public const int MaxNumberWord = 9;

    /// <summary>Region of a cell on a 3×3 division of the board: "top left", "middle centre", "bottom right"…</summary>
    public static string Region(int row, int column, int grid) => Vertical[row * 3 / grid] + " " + Horizontal[column * 3 / grid];

    private static readonly string[] Vertical = ["top", "middle", "bottom"], Horizontal = ["left", "centre", "right"];
}
