//! Line plots of a simulation run, drawn by plotters from one description into an SVG document
//! (sharp at any size, opens in a browser) and a PNG (opens anywhere, embeds in tickets). Text is
//! set in DejaVu Sans, embedded in the binary, so a plot looks the same on every machine and
//! needs no system fonts.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
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
    pub x_label: String,
    /// x values are divided by this before drawing (60: seconds shown as minutes).
    pub x_per_unit: f64,
    /// A dot at each point (a curve through a few measured settings).
    pub markers: bool,
}

pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 360;
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

impl Plot {
    pub fn new(title: &str, y_label: &str, series: Vec<Series>) -> Self {
        Self {
            title: title.into(),
            y_label: y_label.into(),
            series,
            integer_y: false,
            x_label: "minutes".into(),
            x_per_unit: 60.0,
            markers: false,
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

    /// The plot as a standalone SVG document.
    pub fn to_svg(&self) -> Result<String, String> {
        register_font();
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(|e| e.to_string())?;
        }
        Ok(out)
    }

    /// Writes the plot as a PNG file.
    pub fn write_png(&self, path: &Path) -> Result<(), String> {
        register_font();
        let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
        self.draw(&root)?;
        root.present()
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The axes' ranges: x from 0, values from 0 with a tenth of headroom.
    fn ranges(&self) -> (f64, f64) {
        let points = self.series.iter().flat_map(|(_, p)| p.iter());
        let x_max = points
            .clone()
            .map(|p| p.0 / self.x_per_unit)
            .fold(1.0, f64::max);
        let top = points
            .map(|p| p.1)
            .filter(|y| y.is_finite())
            .fold(0.0, f64::max);
        let y_max = if self.integer_y {
            (top + 1.0).ceil().max(2.0)
        } else {
            (top * 1.1).max(1e-9)
        };
        (x_max, y_max)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let (x_max, y_max) = self.ranges();
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(e)?;
        let integer_y = self.integer_y;
        let y_labels = if integer_y {
            (y_max as usize).clamp(2, 10)
        } else {
            6
        };
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .y_labels(y_labels)
            .y_label_formatter(&|v| {
                if integer_y {
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
        for (i, (name, points)) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            if self.markers {
                chart
                    .draw_series(
                        points
                            .iter()
                            .map(|&(x, v)| Circle::new((x / per_unit, v), 3, color.filled())),
                    )
                    .map_err(e)?;
            }
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|&(x, v)| (x / per_unit, v)),
                    color.stroke_width(2),
                ))
                .map_err(e)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
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

/// A tick label with as many decimals as its size needs.
fn short(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn the_axes_start_at_zero_with_headroom() {
        let (x, y) = sample().ranges();
        assert_eq!(x, 20.0);
        assert_eq!(y, 4.0);
        let empty = Plot::new("t", "y", Vec::new());
        assert_eq!(empty.ranges(), (1.0, 1e-9));
    }
}
