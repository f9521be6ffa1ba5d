//! Line plots of a simulation run, drawn by plotters from one description into an SVG document
//! (sharp at any size, opens in a browser) and a PNG (opens anywhere, embeds in tickets). Text is
//! set in DejaVu Sans, embedded in the binary, so a plot looks the same on every machine and
//! needs no system fonts.
//!
//! What a reader compares is decided here, not left to the drawing library: ticks fall on round
//! values (1, 2 or 5 times a power of ten; whole numbers for counts; decades on a log axis), a
//! series can be dashed so that one line coinciding with another still shows, and thresholds
//! and SLOs are drawn as labelled reference lines. A [`Figure`] stacks panels (one per variant)
//! over a shared time axis.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// One named series of (x, value) points; x in seconds for plots against time.
pub type Series = (String, Vec<(f64, f64)>);

/// A line plot, against time in minutes unless told otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    pub title: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Whole numbers only on the y axis (replica counts).
    pub integer_y: bool,
    /// Values on a logarithmic axis, ticks at decades (latencies spanning orders of magnitude).
    pub log_y: bool,
    /// Zoomed to where the values are, never above this (an attainment's 100 %).
    pub y_cap: Option<f64>,
    pub x_label: String,
    /// x values are divided by this before drawing (60: seconds shown as minutes).
    pub x_per_unit: f64,
    /// A dot at each point (a curve through a few measured settings).
    pub markers: bool,
    /// Series drawn dashed, by name: a line that may lie on another (a desired count over the
    /// replicas that follow it) stays visible.
    pub dashed: BTreeSet<String>,
    /// Horizontal reference lines, (label, value): a threshold, an SLO.
    pub references: Vec<(String, f64)>,
}

pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 360;
/// Height of each panel of a [`Figure`].
pub const PANEL_HEIGHT: u32 = 260;
const FONT: &str = "sans-serif";
const COLORS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
];
const REFERENCE: RGBColor = RGBColor(0x55, 0x55, 0x55);
/// About this many ticks per axis.
const TICKS: usize = 6;

/// Registers the embedded font once per process, under the family name the plots use.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is a constant of the dejavu crate: it parses, or no plot could ever be drawn.
        if plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_err()
        {
            tracing::error!("the embedded DejaVu Sans font does not parse; plots have no text");
        }
    });
}

/// A linear axis whose ticks are the ones given (plotters' own choice of ticks for an `f64`
/// range is not always round, and its key-point override gives up the label formatter).
#[derive(Clone)]
struct RoundAxis {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl RoundAxis {
    fn new(ticks: Vec<f64>) -> Self {
        let lo = ticks.first().copied().unwrap_or(0.0);
        let hi = ticks
            .last()
            .copied()
            .filter(|h| *h > lo)
            .unwrap_or(lo + 1.0);
        Self {
            inner: (lo..hi).into(),
            ticks,
        }
    }
}

impl Ranged for RoundAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // The ticks are the labelled lines; no finer light mesh.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

/// Round ticks from 0 covering `max`: a step of 1, 2 or 5 times a power of ten (at least 1
/// for whole numbers), about [`TICKS`] of them; the last tick is the axis' top.
pub fn round_ticks(max: f64, integer: bool) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / TICKS as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let mut step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude);
    if integer {
        step = step.max(1.0).round();
    }
    let steps = (max / step - 1e-9).ceil().max(1.0) as usize;
    (0..=steps).map(|i| i as f64 * step).collect()
}

/// Round ticks from just below `lo` up to `cap`: the step 1, 2 or 5 times a power of ten,
/// about [`TICKS`] of them, the last one `cap` itself.
pub fn zoomed_ticks(lo: f64, cap: f64) -> Vec<f64> {
    let span = (cap - lo).max(cap.abs() * 1e-3).max(1e-9);
    let raw = span / TICKS as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude);
    let steps = ((cap - lo) / step + 1e-9).ceil().max(1.0) as usize;
    (0..=steps).rev().map(|i| cap - i as f64 * step).collect()
}

/// Decade ticks (as powers of ten: 1.0 is 10) covering positive values from `min` to `max`.
pub fn decade_ticks(min: f64, max: f64) -> Vec<f64> {
    let lo = if min.is_finite() && min > 0.0 {
        min.log10().floor()
    } else {
        0.0
    };
    let hi = if max.is_finite() && max > 0.0 {
        max.log10().ceil()
    } else {
        lo + 1.0
    };
    let hi = hi.max(lo + 1.0);
    (lo as i32..=hi as i32).map(f64::from).collect()
}

impl Plot {
    pub fn new(title: &str, y_label: &str, series: Vec<Series>) -> Self {
        Self {
            title: title.into(),
            y_label: y_label.into(),
            series,
            integer_y: false,
            log_y: false,
            y_cap: None,
            x_label: "minutes".into(),
            x_per_unit: 60.0,
            markers: false,
            dashed: BTreeSet::new(),
            references: Vec::new(),
        }
    }

    /// The same plot against another x quantity, its values divided by `per_unit`.
    pub fn against(mut self, x_label: &str, per_unit: f64) -> Self {
        self.x_label = x_label.into();
        self.x_per_unit = per_unit;
        self
    }

    /// The same plot with a dot at each point.
    pub fn with_markers(mut self) -> Self {
        self.markers = true;
        self
    }

    /// The same plot with whole-number y ticks.
    pub fn integers(mut self) -> Self {
        self.integer_y = true;
        self
    }

    /// The same plot with its y axis zoomed to where the values are, up to `cap` at most.
    pub fn zoomed_below(mut self, cap: f64) -> Self {
        self.y_cap = Some(cap);
        self
    }

    /// The same plot on a logarithmic y axis.
    pub fn log(mut self) -> Self {
        self.log_y = true;
        self
    }

    /// The same plot with the series of this name dashed.
    pub fn dash(mut self, name: &str) -> Self {
        self.dashed.insert(name.to_string());
        self
    }

    /// The same plot with a labelled horizontal line at `value`.
    pub fn reference(mut self, label: &str, value: f64) -> Self {
        self.references.push((label.to_string(), value));
        self
    }

    /// The x ticks, in drawn units (minutes for plots against time).
    pub fn x_ticks(&self) -> Vec<f64> {
        let x_max = self
            .series
            .iter()
            .flat_map(|(_, p)| p.iter())
            .map(|p| p.0 / self.x_per_unit)
            .filter(|x| x.is_finite())
            .fold(0.0, f64::max);
        round_ticks(x_max, false)
    }

    /// The y ticks: round values from 0, or decades on a log axis (as exponents).
    pub fn y_ticks(&self) -> Vec<f64> {
        let values = self
            .series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|p| p.1))
            .chain(self.references.iter().map(|r| r.1))
            .filter(|y| y.is_finite());
        if let Some(cap) = self.y_cap.filter(|_| !self.log_y) {
            let values: Vec<f64> = values.map(|y| y.min(cap)).collect();
            let lo = values.iter().copied().fold(cap, f64::min);
            return zoomed_ticks(lo, cap);
        }
        if self.log_y {
            let positive: Vec<f64> = values.filter(|y| *y > 0.0).collect();
            let min = positive.iter().copied().fold(f64::INFINITY, f64::min);
            let max = positive.iter().copied().fold(0.0, f64::max);
            decade_ticks(min, max)
        } else {
            // A tenth of headroom, so a line at the top is not drawn on the frame.
            let top = values.fold(0.0, f64::max) * 1.05;
            round_ticks(top, self.integer_y)
        }
    }

    /// Where a value is drawn on the y axis.
    fn y_of(&self, v: f64) -> Option<f64> {
        if !v.is_finite() {
            return None;
        }
        if self.log_y {
            (v > 0.0).then(|| v.log10())
        } else {
            Some(v)
        }
    }

    /// The plot as a standalone SVG document.
    pub fn to_svg(&self) -> Result<String, String> {
        Figure::single(self.clone()).to_svg()
    }

    /// Writes the plot as a PNG file.
    pub fn write_png(&self, path: &Path) -> Result<(), String> {
        Figure::single(self.clone()).write_png(path)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        let x_ticks = self.x_ticks();
        let y_ticks = self.y_ticks();
        let x_top = x_ticks.last().copied().unwrap_or(1.0);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(RoundAxis::new(x_ticks), RoundAxis::new(y_ticks))
            .map_err(e)?;
        let (integer_y, log_y) = (self.integer_y, self.log_y);
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .y_label_formatter(&|v| {
                if log_y {
                    short(10f64.powf(*v))
                } else if integer_y {
                    format!("{v:.0}")
                } else {
                    short(*v)
                }
            })
            .x_label_formatter(&|v| short(*v))
            .label_style((FONT, 13))
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .draw()
            .map_err(e)?;
        let per_unit = self.x_per_unit;
        for (label, value) in &self.references {
            let Some(y) = self.y_of(*value) else {
                continue;
            };
            let style = REFERENCE.stroke_width(1);
            chart
                .draw_series(DashedLineSeries::new([(0.0, y), (x_top, y)], 4, 4, style))
                .map_err(e)?
                .label(format!("{label} ({})", short(*value)))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        }
        for (i, (name, points)) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let drawn: Vec<(f64, f64)> = points
                .iter()
                .filter_map(|&(x, v)| Some((x / per_unit, self.y_of(v)?)))
                .collect();
            if self.markers {
                chart
                    .draw_series(
                        drawn
                            .iter()
                            .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
                    )
                    .map_err(e)?;
            }
            let style = color.stroke_width(2);
            let dashed = self.dashed.contains(name);
            let series = if dashed {
                chart.draw_series(DashedLineSeries::new(drawn, 7, 5, style))
            } else {
                chart.draw_series(LineSeries::new(drawn, style))
            };
            series
                .map_err(e)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    if dashed {
                        PathElement::new(vec![(x, y), (x + 7, y)], style)
                    } else {
                        PathElement::new(vec![(x, y), (x + 18, y)], style)
                    }
                });
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(0xcc, 0xcc, 0xcc))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(e)?;
        Ok(())
    }
}

/// Panels stacked over one width: a measure per variant, say.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub panels: Vec<Plot>,
}

impl Figure {
    pub fn single(plot: Plot) -> Self {
        Self { panels: vec![plot] }
    }

    pub fn panels(panels: Vec<Plot>) -> Self {
        Self { panels }
    }

    fn size(&self) -> (u32, u32) {
        match self.panels.len() {
            0 | 1 => (WIDTH, HEIGHT),
            n => (WIDTH, PANEL_HEIGHT * n as u32),
        }
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        if self.panels.is_empty() {
            return Ok(());
        }
        let areas = root.split_evenly((self.panels.len(), 1));
        for (plot, area) in self.panels.iter().zip(&areas) {
            plot.draw(area)?;
        }
        Ok(())
    }

    /// The figure as a standalone SVG document.
    pub fn to_svg(&self) -> Result<String, String> {
        register_font();
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, self.size()).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(|e| e.to_string())?;
        }
        Ok(out)
    }

    /// Writes the figure as a PNG file.
    pub fn write_png(&self, path: &Path) -> Result<(), String> {
        register_font();
        let root = BitMapBackend::new(path, self.size()).into_drawing_area();
        self.draw(&root)?;
        root.present()
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// A tick label with as many decimals as its size needs.
fn short(v: f64) -> String {
    let v = if v.abs() < 1e-12 { 0.0 } else { v };
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 || v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else if v.abs() >= 0.01 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attainment never drawn above 100 %, and zoomed to where the points are.
    #[test]
    fn a_zoomed_axis_ends_at_its_cap_and_starts_just_below_the_points() {
        let p = Plot::new(
            "frontier",
            "SLO attainment (%)",
            vec![("a".into(), vec![(10.0, 91.3), (20.0, 99.7), (30.0, 100.0)])],
        )
        .zoomed_below(100.0);
        let ticks = p.y_ticks();
        assert_eq!(ticks.last(), Some(&100.0));
        assert!(ticks[0] <= 91.3 && ticks[0] > 85.0, "{ticks:?}");
        assert!(ticks.windows(2).all(|w| w[1] > w[0]));
        // All the way down when a point is far below.
        let low = Plot::new("f", "%", vec![("a".into(), vec![(1.0, 6.4), (2.0, 99.0)])])
            .zoomed_below(100.0)
            .y_ticks();
        assert!(
            low[0] <= 6.4 && *low.last().expect("ticks") == 100.0,
            "{low:?}"
        );
    }

    fn sample() -> Plot {
        Plot::new(
            "Replicas <per> variant",
            "replicas",
            vec![
                ("a".into(), vec![(0.0, 1.0), (600.0, 3.0), (1200.0, 2.0)]),
                ("b".into(), vec![(0.0, 2.0), (1200.0, 2.0)]),
            ],
        )
        .integers()
    }

    #[test]
    fn svg_escapes_text_and_draws_every_series() {
        let svg = sample().to_svg().expect("svg");
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(
            svg.contains("Replicas &lt;per&gt; variant"),
            "the title, escaped"
        );
        // One line per series, plus one per legend entry, each in its own colour.
        for colour in ["#1F77B4", "#FF7F0E"] {
            let lines = svg
                .matches(&format!(r#"stroke="{colour}" stroke-width="2""#))
                .count();
            assert_eq!(lines, 2, "{colour} in {svg}");
        }
        // Whole-number ticks on a replica axis: no "2.5".
        assert!(!svg.contains(">\n2.5\n<"), "{svg}");
        assert!(svg.contains(">\n2\n<"), "{svg}");
        assert!(svg.contains(">\nminutes\n<"), "{svg}");
    }

    #[test]
    fn png_is_an_image_of_the_plot_size_with_the_lines_drawn() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("p.png");
        sample().write_png(&path).expect("png");
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(&bytes[1..4], b"PNG");
        // IHDR: width and height, big-endian, right after the signature and chunk header.
        let width = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
        let height = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
        assert_eq!((width, height), (WIDTH, HEIGHT));
        // Panels stack: three of them make a taller image.
        let three = Figure::panels(vec![sample(), sample(), sample()]);
        three.write_png(&path).expect("png");
        let bytes = std::fs::read(&path).expect("read");
        let height = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
        assert_eq!(height, 3 * PANEL_HEIGHT);
    }

    /// Issue 18: ticks fall on round values (the old axis put them at 0.83 and 14.9).
    #[test]
    fn ticks_are_round() {
        assert_eq!(round_ticks(20.0, false), [0.0, 5.0, 10.0, 15.0, 20.0]);
        assert_eq!(
            round_ticks(0.83, false),
            [0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(round_ticks(14.9, false), [0.0, 5.0, 10.0, 15.0]);
        assert_eq!(round_ticks(3.15, true), [0.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(round_ticks(0.0, true), [0.0, 1.0]);
        let big = round_ticks(23_456.0, false);
        assert_eq!(big.last(), Some(&25_000.0));
        assert!(big.iter().all(|t| t % 5_000.0 == 0.0));
        assert_eq!(decade_ticks(42.0, 24_546.0), [1.0, 2.0, 3.0, 4.0, 5.0]);
        // The plot's own axes.
        let p = sample();
        assert_eq!(p.x_ticks(), [0.0, 5.0, 10.0, 15.0, 20.0]);
        assert_eq!(p.y_ticks(), [0.0, 1.0, 2.0, 3.0, 4.0]);
        let with_slo = Plot::new(
            "t",
            "ms",
            vec![("p99".into(), vec![(0.0, 80.0), (60.0, 24_000.0)])],
        )
        .log()
        .reference("SLO", 1_000.0);
        assert_eq!(with_slo.y_ticks(), [1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn dashed_series_and_reference_lines_are_drawn_and_labelled() {
        let svg = sample()
            .dash("b")
            .reference("threshold", 2.5)
            .to_svg()
            .expect("svg");
        assert!(svg.contains("threshold (2.5)"), "{svg}");
        // A dashed series is drawn as several short segments, a solid one as one polyline.
        let solid_b = svg
            .matches(r##"stroke="#FF7F0E" stroke-width="2""##)
            .count();
        assert!(solid_b > 2, "b is dashed: {solid_b} segments");
    }
}
