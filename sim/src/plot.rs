//! Line plots of a simulation run, drawn two ways from one layout: an SVG document (sharp at any
//! size, opens in a browser) and a PNG (opens anywhere, embeds in chat and tickets). The PNG is
//! rasterised here, with an 8×8 bitmap font, so no system fonts or image libraries are needed.

use std::fmt::Write as _;

use font8x8::UnicodeFonts;

/// One named series of (seconds, value) points.
pub type Series = (String, Vec<(f64, f64)>);

/// A line plot against time in minutes.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    pub title: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

const W: f64 = 900.0;
const H: f64 = 360.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLORS: [[u8; 3]; 6] = [
    [0x1f, 0x77, 0xb4],
    [0xff, 0x7f, 0x0e],
    [0x2c, 0xa0, 0x2c],
    [0xd6, 0x27, 0x28],
    [0x94, 0x67, 0xbd],
    [0x8c, 0x56, 0x4b],
];

/// Where things go: the axes' scales and the tick values, shared by both renderers.
struct Layout {
    x_max: f64,
    y_max: f64,
}

impl Layout {
    fn of(plot: &Plot) -> Self {
        let points = plot.series.iter().flat_map(|(_, p)| p.iter());
        let x_max = points.clone().map(|p| p.0).fold(1.0, f64::max);
        let y_max = points
            .map(|p| p.1)
            .filter(|y| y.is_finite())
            .fold(0.0, f64::max)
            .max(1e-9)
            * 1.1;
        Self { x_max, y_max }
    }

    fn sx(&self, x: f64) -> f64 {
        LEFT + x / self.x_max * (W - LEFT - RIGHT)
    }

    fn sy(&self, y: f64) -> f64 {
        H - BOTTOM - y / self.y_max * (H - TOP - BOTTOM)
    }

    /// Five ticks per axis: (value, position).
    fn ticks(&self) -> impl Iterator<Item = (f64, f64, f64, f64)> + '_ {
        (0..=4).map(|i| {
            let y = self.y_max * f64::from(i) / 4.0;
            let x = self.x_max * f64::from(i) / 4.0;
            (x, self.sx(x), y, self.sy(y))
        })
    }
}

fn hex([r, g, b]: [u8; 3]) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn short(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Plot {
    pub fn new(title: &str, y_label: &str, series: Vec<Series>) -> Self {
        Self {
            title: title.into(),
            y_label: y_label.into(),
            series,
        }
    }

    /// The plot as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let l = Layout::of(self);
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = write!(
            out,
            r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
            W / 2.0,
            escape(&self.title)
        );
        let _ = write!(
            out,
            r#"<line x1="{LEFT}" y1="{0}" x2="{1}" y2="{0}" stroke="black"/>"#,
            H - BOTTOM,
            W - RIGHT
        );
        let _ = write!(
            out,
            r#"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}" stroke="black"/>"#,
            H - BOTTOM
        );
        for (x, px, y, py) in l.ticks() {
            let _ = write!(
                out,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                py + 4.0,
                short(y)
            );
            let _ = write!(
                out,
                r##"<line x1="{LEFT}" y1="{py}" x2="{}" y2="{py}" stroke="#ddd"/>"##,
                W - RIGHT
            );
            let _ = write!(
                out,
                r#"<text x="{px}" y="{}" text-anchor="middle">{}</text>"#,
                H - BOTTOM + 16.0,
                short(x / 60.0)
            );
        }
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">minutes</text>"#,
            (LEFT + W - RIGHT) / 2.0,
            H - 12.0
        );
        let _ = write!(
            out,
            r#"<text x="16" y="{0}" transform="rotate(-90 16 {0})" text-anchor="middle">{1}</text>"#,
            H / 2.0,
            escape(&self.y_label)
        );
        for (i, (name, pts)) in self.series.iter().enumerate() {
            let color = hex(COLORS[i % COLORS.len()]);
            let path: Vec<String> = pts
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", l.sx(*x), l.sy(*y)))
                .collect();
            let _ = write!(
                out,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
                path.join(" ")
            );
            let ly = TOP + 14.0 * i as f64;
            let _ = write!(
                out,
                r#"<rect x="{}" y="{}" width="10" height="10" fill="{color}"/>"#,
                W - RIGHT - 190.0,
                ly - 9.0
            );
            let _ = write!(
                out,
                r#"<text x="{}" y="{ly}">{}</text>"#,
                W - RIGHT - 175.0,
                escape(name)
            );
        }
        out.push_str("</svg>\n");
        out
    }

    /// The same plot as a PNG image.
    pub fn to_png(&self) -> Result<Vec<u8>, String> {
        let l = Layout::of(self);
        let mut c = Canvas::new(W as usize, H as usize);
        const BLACK: [u8; 3] = [0, 0, 0];
        const GRID: [u8; 3] = [0xdd, 0xdd, 0xdd];
        c.text_centered(&self.title, W / 2.0, 12.0, 2, BLACK);
        for (x, px, y, py) in l.ticks() {
            c.line(LEFT, py, W - RIGHT, py, 1.0, GRID);
            let label = short(y);
            c.text(
                &label,
                LEFT - 6.0 - 8.0 * label.len() as f64,
                py - 4.0,
                1,
                BLACK,
            );
            c.text_centered(&short(x / 60.0), px, H - BOTTOM + 8.0, 1, BLACK);
        }
        c.line(LEFT, H - BOTTOM, W - RIGHT, H - BOTTOM, 1.0, BLACK);
        c.line(LEFT, TOP, LEFT, H - BOTTOM, 1.0, BLACK);
        c.text_centered("minutes", (LEFT + W - RIGHT) / 2.0, H - 22.0, 1, BLACK);
        c.text_vertical(&self.y_label, 10.0, H / 2.0, BLACK);
        for (i, (name, pts)) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            for pair in pts.windows(2) {
                let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
                if [x0, y0, x1, y1].iter().all(|v| v.is_finite()) {
                    c.line(l.sx(x0), l.sy(y0), l.sx(x1), l.sy(y1), 1.6, color);
                }
            }
            let ly = TOP + 14.0 * i as f64;
            c.rect(W - RIGHT - 190.0, ly - 9.0, 10.0, 10.0, color);
            c.text(name, W - RIGHT - 175.0, ly - 8.0, 1, BLACK);
        }
        c.encode()
    }
}

/// An RGB image with the few drawing operations a line plot needs.
struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            pixels: vec![255; width * height * 3],
        }
    }

    /// Blends `color` into a pixel with coverage `alpha` (0..1).
    fn blend(&mut self, x: i64, y: i64, color: [u8; 3], alpha: f64) {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height {
            return;
        }
        let at = (y as usize * self.width + x as usize) * 3;
        let a = alpha.clamp(0.0, 1.0);
        for (k, c) in color.iter().enumerate() {
            let old = f64::from(self.pixels[at + k]);
            self.pixels[at + k] = (old + (f64::from(*c) - old) * a).round() as u8;
        }
    }

    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, color: [u8; 3]) {
        for py in y.round() as i64..(y + h).round() as i64 {
            for px in x.round() as i64..(x + w).round() as i64 {
                self.blend(px, py, color, 1.0);
            }
        }
    }

    /// An anti-aliased line of the given width: each pixel near the segment is covered by how
    /// far its centre lies from it.
    fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, width: f64, color: [u8; 3]) {
        let half = width / 2.0;
        let (min_x, max_x) = (x0.min(x1) - half - 1.0, x0.max(x1) + half + 1.0);
        let (min_y, max_y) = (y0.min(y1) - half - 1.0, y0.max(y1) + half + 1.0);
        let (dx, dy) = (x1 - x0, y1 - y0);
        let len2 = dx * dx + dy * dy;
        for py in min_y.floor() as i64..=max_y.ceil() as i64 {
            for px in min_x.floor() as i64..=max_x.ceil() as i64 {
                let (cx, cy) = (px as f64 + 0.5, py as f64 + 0.5);
                let t = if len2 > 0.0 {
                    (((cx - x0) * dx + (cy - y0) * dy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let (nx, ny) = (x0 + t * dx - cx, y0 + t * dy - cy);
                let distance = (nx * nx + ny * ny).sqrt();
                let coverage = half + 0.5 - distance;
                if coverage > 0.0 {
                    self.blend(px, py, color, coverage);
                }
            }
        }
    }

    fn glyph(ch: char) -> [u8; 8] {
        font8x8::BASIC_FONTS
            .get(ch)
            .or_else(|| font8x8::LATIN_FONTS.get(ch))
            .or_else(|| font8x8::BASIC_FONTS.get('?'))
            .unwrap_or([0; 8])
    }

    /// Text with its top-left corner at (x, y), each font pixel `scale` pixels wide.
    fn text(&mut self, text: &str, x: f64, y: f64, scale: i64, color: [u8; 3]) {
        let (x, y) = (x.round() as i64, y.round() as i64);
        for (i, ch) in text.chars().enumerate() {
            for (row, bits) in Self::glyph(ch).iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        let gx = x + (i as i64 * 8 + col) * scale;
                        let gy = y + row as i64 * scale;
                        for sy in 0..scale {
                            for sx in 0..scale {
                                self.blend(gx + sx, gy + sy, color, 1.0);
                            }
                        }
                    }
                }
            }
        }
    }

    fn text_centered(&mut self, text: &str, cx: f64, y: f64, scale: i64, color: [u8; 3]) {
        let width = (text.chars().count() * 8) as f64 * scale as f64;
        self.text(text, cx - width / 2.0, y, scale, color);
    }

    /// Text read bottom to top, centred on (x, cy): the y-axis label.
    fn text_vertical(&mut self, text: &str, x: f64, cy: f64, color: [u8; 3]) {
        let height = (text.chars().count() * 8) as i64;
        let (x, bottom) = (x.round() as i64, (cy + height as f64 / 2.0).round() as i64);
        for (i, ch) in text.chars().enumerate() {
            for (row, bits) in Self::glyph(ch).iter().enumerate() {
                for col in 0..8i64 {
                    if bits & (1 << col) != 0 {
                        // Rotated 90° anticlockwise: columns go up, rows go right.
                        self.blend(x + row as i64, bottom - (i as i64 * 8 + col), color, 1.0);
                    }
                }
            }
        }
    }

    fn encode(&self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| format!("PNG header: {e}"))?;
        writer
            .write_image_data(&self.pixels)
            .map_err(|e| format!("PNG data: {e}"))?;
        writer.finish().map_err(|e| format!("PNG end: {e}"))?;
        Ok(out)
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
                ("b".into(), vec![(0.0, 0.0), (1200.0, f64::NAN)]),
            ],
        )
    }

    #[test]
    fn svg_escapes_text_and_draws_every_series() {
        let svg = sample().to_svg();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("Replicas &lt;per&gt; variant"));
        assert_eq!(svg.matches("<polyline").count(), 2);
    }

    #[test]
    fn png_is_a_decodable_image_with_the_lines_drawn() {
        let bytes = sample().to_png().expect("png");
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().expect("header");
        let mut buf = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut buf).expect("frame");
        assert_eq!((info.width, info.height), (900, 360));
        // Series a's colour appears, and most of the image is still white background.
        let a = COLORS[0];
        let pixels: Vec<&[u8]> = buf.chunks(3).collect();
        assert!(pixels.iter().any(|p| *p == a));
        let white = pixels.iter().filter(|p| **p == [255, 255, 255]).count();
        assert!(white > pixels.len() / 2);
    }
}
