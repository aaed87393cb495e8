using System.Globalization;
using System.Net;
using System.Text;
using VwLmm.Data.Images;

namespace VwLmm.Cli.Reports;

/// <summary>A loss curve: (global step, value) points of one series.</summary>
public sealed record Series(string Name, string Colour, IReadOnlyList<(int Step, double Value)> Points);

/// <summary>
/// Self-contained HTML reports (inline SVG and base64 PNG, no scripts or external files) that open in any browser:
/// loss curves, accuracy tables and visual-word maps.
/// </summary>
public sealed class HtmlReport
{
    private readonly StringBuilder _body = new();
    private readonly string _title;
    private bool _inSection;

    public HtmlReport(string title) => _title = title;

    private static string E(string s) => WebUtility.HtmlEncode(s);
    private static string F(double x, string fmt = "0.###") => x.ToString(fmt, CultureInfo.InvariantCulture);

    /// <summary>Starts a section (ending the previous one): sections sit side by side where the window is wide enough.</summary>
    public HtmlReport Heading(string text)
    {
        if (_inSection) _body.Append("</section>\n");
        _body.Append("<section><h2>").Append(E(text)).Append("</h2>\n");
        _inSection = true;
        return this;
    }

    public HtmlReport Paragraph(string text)
    {
        _body.Append("<p>").Append(E(text)).Append("</p>\n");
        return this;
    }

    /// <summary>A table; the first row is the header. A wide one (many columns) takes its section across the page.</summary>
    public HtmlReport Table(IReadOnlyList<IReadOnlyList<string>> rows, bool wide = false)
    {
        _body.Append(wide ? "<table class=\"wide\">\n" : "<table>\n");
        for (int r = 0; r < rows.Count; r++)
        {
            string cell = r == 0 ? "th" : "td";
            _body.Append("<tr>");
            foreach (var c in rows[r]) _body.Append('<').Append(cell).Append('>').Append(E(c)).Append("</").Append(cell).Append('>');
            _body.Append("</tr>\n");
        }
        _body.Append("</table>\n");
        return this;
    }

    /// <summary>Loss curves on one chart; vertical markers at stage boundaries (step, label).</summary>
    public HtmlReport LossChart(IReadOnlyList<Series> series, IReadOnlyList<(int Step, string Label)> stages, bool logScale = false)
    {
        const int w = 540, h = 270, left = 56, right = 16, top = 16, bottom = 36;
        var pts = series.SelectMany(s => s.Points).Where(p => double.IsFinite(p.Value) && (!logScale || p.Value > 0)).ToList();
        if (pts.Count == 0) return Paragraph("(no loss values recorded)");
        // The axis starts at the first stage boundary (step 0) even when metrics are logged from a later step, so every
        // marker lies inside the plot.
        double x0 = stages.Select(s => (double)s.Step).Append(pts.Min(p => p.Step)).Min(), x1 = Math.Max(x0 + 1, pts.Max(p => p.Step));
        double Tr(double v) => logScale ? Math.Log10(v) : v;
        double y0 = logScale ? Tr(pts.Min(p => p.Value)) : Math.Min(0, pts.Min(p => p.Value)), y1 = Tr(pts.Max(p => p.Value));
        if (y1 <= y0) y1 = y0 + 1;
        double X(double s) => left + (s - x0) / (x1 - x0) * (w - left - right);
        double Y(double v) => top + (1 - (Tr(v) - y0) / (y1 - y0)) * (h - top - bottom);
        var svg = new StringBuilder();
        svg.Append($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" class=\"chart\">");
        svg.Append($"<rect x=\"{left}\" y=\"{top}\" width=\"{w - left - right}\" height=\"{h - top - bottom}\" fill=\"#fff\" stroke=\"#bbb\"/>");
        for (int i = 0; i <= 4; i++)
        {
            double yv = y0 + (y1 - y0) * i / 4;
            double py = top + (1 - (double)i / 4) * (h - top - bottom);
            string label = logScale ? F(Math.Pow(10, yv), "0.###") : F(yv, "0.##");
            svg.Append($"<line x1=\"{left}\" x2=\"{w - right}\" y1=\"{F(py)}\" y2=\"{F(py)}\" stroke=\"#eee\"/>");
            svg.Append($"<text x=\"{left - 4}\" y=\"{F(py + 4)}\" text-anchor=\"end\" font-size=\"11\">{label}</text>");
        }
        foreach (var (step, label) in stages)
        {
            double px = X(step);
            svg.Append($"<line x1=\"{F(px)}\" x2=\"{F(px)}\" y1=\"{top}\" y2=\"{h - bottom}\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>");
            svg.Append($"<text x=\"{F(px + 3)}\" y=\"{top + 12}\" font-size=\"11\" fill=\"#555\">{E(label)}</text>");
        }
        svg.Append($"<text x=\"{(left + w - right) / 2}\" y=\"{h - 6}\" text-anchor=\"middle\" font-size=\"11\">step</text>");
        svg.Append($"<text x=\"{left}\" y=\"{h - 20}\" font-size=\"11\">{F(x0, "0")}</text><text x=\"{w - right}\" y=\"{h - 20}\" text-anchor=\"end\" font-size=\"11\">{F(x1, "0")}</text>");
        int legendX = left + 8;
        foreach (var s in series)
        {
            var valid = s.Points.Where(p => double.IsFinite(p.Value) && (!logScale || p.Value > 0)).ToList();
            if (valid.Count > 0)
                svg.Append($"<polyline fill=\"none\" stroke=\"{s.Colour}\" stroke-width=\"1.5\" points=\"{string.Join(" ", valid.Select(p => $"{F(X(p.Step), "0.#")},{F(Y(p.Value), "0.#")}"))}\"/>");
            svg.Append($"<rect x=\"{legendX}\" y=\"{h - bottom - 16}\" width=\"10\" height=\"10\" fill=\"{s.Colour}\"/><text x=\"{legendX + 14}\" y=\"{h - bottom - 7}\" font-size=\"11\">{E(s.Name)}</text>");
            legendX += 24 + 7 * s.Name.Length;
        }
        svg.Append("</svg>");
        _body.Append(svg).Append('\n');
        return this;
    }

    /// <summary>Visual-word maps side by side: the image scaled up, each patch labelled with its argmax word and
    /// coloured by verdict; hovering a cell shows the top-k words.</summary>
    public HtmlReport Maps(IReadOnlyList<VisualWordMap> maps, int cellPixels = 40)
    {
        _body.Append("<div class=\"maps\">\n");
        foreach (var m in maps) _body.Append(MapSvg(m, cellPixels)).Append('\n');
        _body.Append("</div>\n<p class=\"legend\"><span class=\"ok\">■</span> names the patch's colour or shape &nbsp; <span class=\"bad\">■</span> names something else &nbsp; <span class=\"bg\">■</span> background patch &nbsp; <span class=\"unk\">■</span> no ground truth</p>\n");
        return this;
    }

    public static string MapSvg(VisualWordMap m, int cellPixels)
    {
        int size = m.Grid * cellPixels;
        string png = Convert.ToBase64String(ImageCodec.EncodePng(m.Image));
        var svg = new StringBuilder();
        svg.Append($"<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{size}\" height=\"{size}\" viewBox=\"0 0 {size} {size}\">");
        svg.Append($"<image href=\"data:image/png;base64,{png}\" width=\"{size}\" height=\"{size}\" style=\"image-rendering:pixelated\" preserveAspectRatio=\"none\"/>");
        for (int i = 0; i < m.Cells.Count; i++)
        {
            var c = m.Cells[i];
            int x = i % m.Grid * cellPixels, y = i / m.Grid * cellPixels;
            string colour = c.Verdict switch
            {
                CellVerdict.Correct => "#1a9850",
                CellVerdict.Wrong => "#d73027",
                CellVerdict.Background => "#777777",
                _ => "#2166ac",
            };
            string tip = string.Join("\n", c.Top.Select(t => $"{t.Word}  {F(t.P, "0.000")}"));
            if (c.Truth is not null) tip = $"truth: {c.Truth}\n{tip}";
            svg.Append($"<g><title>{E(tip)}</title>");
            svg.Append($"<rect x=\"{x + 1}\" y=\"{y + 1}\" width=\"{cellPixels - 2}\" height=\"{cellPixels - 2}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>");
            svg.Append($"<rect x=\"{x + 2}\" y=\"{y + cellPixels - 14}\" width=\"{cellPixels - 4}\" height=\"12\" fill=\"{colour}\" opacity=\"0.8\"/>");
            svg.Append($"<text x=\"{x + cellPixels / 2}\" y=\"{y + cellPixels - 4}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#fff\">{E(Shorten(c.Word, cellPixels / 6))}</text></g>");
        }
        svg.Append($"</svg><figcaption>{E(m.Title)}</figcaption></figure>");
        return svg.ToString();
    }

    private static string Shorten(string s, int max) => s.Length <= max ? s : s[..Math.Max(1, max - 1)] + "…";

    public string Render() =>
        $$"""
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>{{E(_title)}}</title>
        <style>
        body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:16px auto;padding:0 20px;max-width:1060px;color:#222;font-size:15px}
        h1{margin:0 0 8px}h2{font-size:19px;margin:16px 0 8px}p{margin:8px 0}
        main{display:flex;flex-wrap:wrap;align-items:flex-start;column-gap:32px}main>*{flex-basis:100%}
        main>section{flex-basis:auto;min-width:0}main>section:has(.maps,.wide){flex-basis:100%}
        table{border-collapse:collapse;max-width:480px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
        th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}table.wide{max-width:none;font-size:13px}td+td{white-space:nowrap}.chart{max-width:100%;height:auto}
        .maps{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0;width:min-content}figcaption{font-size:11px;color:#555}
        .ok{color:#1a9850}.bad{color:#d73027}.bg{color:#777}.unk{color:#2166ac}.legend{font-size:13px}
        </style></head><body>
        <h1>{{E(_title)}}</h1>
        <main>
        {{_body}}{{(_inSection ? "</section>" : "")}}
        </main>
        </body></html>
        """;

    /// <summary>Writes the report atomically.</summary>
    public void Save(string path) => VwLmm.Core.AtomicFile.WriteAllText(path, Render());
}
