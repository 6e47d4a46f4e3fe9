//! Bar charts as inline SVG, drawn on the server: no script, no library, no CDN. Colours
//! and sizes are SVG presentation attributes (the pages' CSP forbids inline `style`), every
//! text is escaped, and a right-to-left page gets a mirrored chart (labels on the right,
//! bars growing leftwards). Each chart carries a `<title>` and sits beside a table with
//! the same figures, which is what a screen reader reads.

use std::fmt::Write;

/// One series of a chart: its label in the legend and its colour.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub color: &'static str,
}

/// One bar (or group of bars): its label and a value per series (`None`: not reported).
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub values: Vec<Option<f64>>,
}

/// How a chart is laid out and labelled.
#[derive(Clone, Copy)]
pub struct Frame<'a> {
    /// The element id (its `<title>` is `<id>-title`).
    pub id: &'a str,
    pub title: &'a str,
    /// The unit after each tick value (`h`, `%`).
    pub unit: &'a str,
    pub rtl: bool,
    /// Writes a number in the page's digits.
    pub digits: &'a dyn Fn(&str) -> String,
}

const WIDTH: f64 = 640.0;
const LABEL: f64 = 120.0;
const PAD: f64 = 12.0;
const ROW: f64 = 22.0;
const LEGEND: f64 = 26.0;
const AXIS: f64 = 22.0;
const INK: &str = "#1f2933";
const GRID: &str = "#d5dbe1";

/// Escapes text for SVG content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A round upper bound for the axis: 1, 2 or 5 times a power of ten, at least `max`.
pub fn nice_max(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|v| *v >= max - 1e-9)
        .unwrap_or(10.0 * p)
}

fn short(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

struct Canvas<'a> {
    f: Frame<'a>,
    out: String,
}

impl Canvas<'_> {
    /// An x position measured from the start side (left in LTR, right in RTL).
    fn x(&self, from_start: f64, width: f64) -> f64 {
        if self.f.rtl {
            WIDTH - from_start - width
        } else {
            from_start
        }
    }

    fn text(&mut self, from_start: f64, y: f64, anchor_end: bool, text: &str, size: u32) {
        // `start` and `end` follow the text's direction, so the same anchor mirrors with
        // the chart: `end` puts the text before x (a label beside its bar), `start` after.
        let x = self.x(from_start, 0.0);
        let anchor = if anchor_end { "end" } else { "start" };
        let _ = write!(
            self.out,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" fill="{INK}" text-anchor="{anchor}" direction="{}">{}</text>"#,
            if self.f.rtl { "rtl" } else { "ltr" },
            esc(text)
        );
    }

    fn rect(&mut self, from_start: f64, y: f64, w: f64, h: f64, color: &str, tip: &str) {
        let x = self.x(from_start, w);
        let _ = write!(
            self.out,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{color}"><title>{}</title></rect>"#,
            esc(tip)
        );
    }

    fn legend(&mut self, series: &[Series]) {
        let mut at = PAD;
        for s in series {
            self.rect(at, 6.0, 12.0, 12.0, s.color, &s.label);
            self.text(at + 16.0, 16.0, false, &s.label, 12);
            at += 16.0 + 8.0 * s.label.chars().count() as f64 + 18.0;
        }
    }

    /// Vertical grid lines and tick values for 0..=max over the plot's width.
    fn axis(&mut self, top: f64, bottom: f64, max: f64) {
        let plot = WIDTH - LABEL - 2.0 * PAD;
        for i in 0..=4 {
            let v = max * f64::from(i) / 4.0;
            let from = LABEL + PAD + plot * f64::from(i) / 4.0;
            let x = self.x(from, 0.0);
            let _ = write!(
                self.out,
                r#"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="{GRID}" stroke-width="1"/>"#
            );
            let label = (self.f.digits)(&format!("{}{}", short(v), self.f.unit));
            let x = self.x(from, 0.0);
            let _ = write!(
                self.out,
                r#"<text x="{x:.1}" y="{:.1}" font-size="11" fill="{INK}" text-anchor="middle">{}</text>"#,
                bottom + 14.0,
                esc(&label)
            );
        }
    }

    fn finish(mut self, height: f64) -> String {
        let id = esc(self.f.id);
        let head = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" id="{id}" class="chart" role="img" aria-labelledby="{id}-title" viewBox="0 0 {WIDTH} {height:.0}" width="{WIDTH}" height="{height:.0}" font-family="sans-serif"><title id="{id}-title">{}</title>"#,
            esc(self.f.title)
        );
        self.out.insert_str(0, &head);
        self.out.push_str("</svg>");
        self.out
    }
}

/// One horizontal bar per entry, its series stacked end to end (hours of a day on each
/// source, say), against an axis from 0 to `max` (or the largest total).
pub fn stacked(f: Frame<'_>, series: &[Series], bars: &[Bar], max: Option<f64>) -> String {
    let largest = bars
        .iter()
        .map(|b| b.values.iter().flatten().sum::<f64>())
        .fold(0.0, f64::max);
    let max = max.unwrap_or_else(|| nice_max(largest));
    let mut c = Canvas {
        f,
        out: String::new(),
    };
    c.legend(series);
    let top = LEGEND;
    let bottom = top + ROW * bars.len() as f64;
    c.axis(top, bottom, max);
    let plot = WIDTH - LABEL - 2.0 * PAD;
    for (i, b) in bars.iter().enumerate() {
        let y = top + ROW * i as f64;
        c.text(LABEL, y + ROW * 0.7, true, &b.label, 12);
        let mut at = LABEL + PAD;
        for (s, v) in series.iter().zip(&b.values) {
            let Some(v) = v.filter(|v| *v > 0.0) else {
                continue;
            };
            let w = (v / max * plot).min(plot);
            let tip = format!("{} {}: {}{}", b.label, s.label, short(v), f.unit);
            c.rect(at, y + 3.0, w, ROW - 6.0, s.color, &(f.digits)(&tip));
            at += w;
        }
    }
    c.finish(bottom + AXIS)
}

/// Bars side by side per entry, one per series (solar centers against the others).
pub fn grouped(f: Frame<'_>, series: &[Series], bars: &[Bar]) -> String {
    let largest = bars
        .iter()
        .flat_map(|b| b.values.iter().flatten())
        .fold(0.0f64, |a, v| a.max(*v));
    let max = nice_max(largest);
    let mut c = Canvas {
        f,
        out: String::new(),
    };
    c.legend(series);
    let top = LEGEND;
    let n = series.len().max(1) as f64;
    let group = ROW * n + 8.0;
    let bottom = top + group * bars.len() as f64;
    c.axis(top, bottom, max);
    let plot = WIDTH - LABEL - 2.0 * PAD;
    for (i, b) in bars.iter().enumerate() {
        let y = top + group * i as f64;
        c.text(LABEL, y + group / 2.0 + 4.0, true, &b.label, 12);
        for (j, (s, v)) in series.iter().zip(&b.values).enumerate() {
            let row_y = y + 4.0 + ROW * j as f64;
            match v {
                Some(v) => {
                    let w = (v / max * plot).clamp(0.0, plot);
                    let tip = format!("{} {}: {}{}", b.label, s.label, short(*v), f.unit);
                    c.rect(
                        LABEL + PAD,
                        row_y + 2.0,
                        w,
                        ROW - 4.0,
                        s.color,
                        &(f.digits)(&tip),
                    );
                    let value = (f.digits)(&format!("{}{}", short(*v), f.unit));
                    c.text(LABEL + PAD + w + 4.0, row_y + ROW * 0.7, false, &value, 11);
                }
                None => c.text(LABEL + PAD + 4.0, row_y + ROW * 0.7, false, "–", 11),
            }
        }
    }
    c.finish(bottom + AXIS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame<'a>(rtl: bool, digits: &'a dyn Fn(&str) -> String) -> Frame<'a> {
        Frame {
            id: "c1",
            title: "Hours <by> source",
            unit: "h",
            rtl,
            digits,
        }
    }

    #[test]
    fn axis_bounds_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(24.0), 50.0);
        assert_eq!(nice_max(20.0), 20.0);
        assert_eq!(nice_max(3.2), 5.0);
        assert_eq!(nice_max(0.09), 0.1);
    }

    #[test]
    fn a_stacked_chart_is_svg_without_style_and_escaped() {
        let plain = |s: &str| s.to_string();
        let series = vec![
            Series {
                label: "grid".into(),
                color: "#4a6fa5",
            },
            Series {
                label: "<b>gen</b>".into(),
                color: "#b23b3b",
            },
        ];
        let bars = vec![
            Bar {
                label: "2026-12-01".into(),
                values: vec![Some(20.0), Some(4.0)],
            },
            Bar {
                label: "2026-12-02".into(),
                values: vec![Some(24.0), None],
            },
        ];
        let svg = stacked(frame(false, &plain), &series, &bars, Some(24.0));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(!svg.contains("style="), "CSP forbids inline style");
        assert!(!svg.contains("<b>") && svg.contains("&lt;b&gt;gen"));
        assert!(svg.contains("Hours &lt;by&gt; source"));
        // Three bars (20 h + 4 h, 24 h) plus two legend swatches; a full day spans the plot.
        assert_eq!(svg.matches("<rect").count(), 5);
        let plot = WIDTH - LABEL - 2.0 * PAD;
        assert!(svg.contains(&format!("width=\"{plot:.1}\"")), "{svg}");
        // Right to left: the first bar starts at the right edge of the plot.
        let rtl = stacked(frame(true, &plain), &series, &bars, Some(24.0));
        let start = WIDTH - LABEL - PAD;
        let w = 20.0 / 24.0 * plot;
        assert!(rtl.contains(&format!("x=\"{:.1}\"", start - w)), "{rtl}");
        assert!(rtl.contains("direction=\"rtl\""));
    }

    #[test]
    fn grouped_bars_write_values_in_the_pages_digits() {
        let arabic = |s: &str| markaz_web::i18n::Digits::ArabicIndic.apply(s);
        let series = vec![
            Series {
                label: "solar".into(),
                color: "#e0a800",
            },
            Series {
                label: "other".into(),
                color: "#9aa5b1",
            },
        ];
        let bars = vec![Bar {
            label: "generator".into(),
            values: vec![Some(0.5), Some(4.5)],
        }];
        let svg = grouped(frame(false, &arabic), &series, &bars);
        assert!(svg.contains("٤٫٥h") || svg.contains("٤.٥h"), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 4);
    }
}
