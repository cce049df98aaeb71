//! The ratio chart: one horizontal bar per metric on a log scale, ours divided by Litestream's,
//! with the target marked. Text needs a TrueType font; DejaVu Sans is used when the system has
//! it (Debian's fonts-dejavu-core), otherwise the chart is drawn without text.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

pub struct Bar {
    pub label: String,
    /// ls / litestream.
    pub ratio: f64,
    pub target: Option<f64>,
    pub met: Option<bool>,
}

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

fn load_font() -> bool {
    for p in FONT_PATHS {
        if let Ok(bytes) = std::fs::read(p) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

/// log10 range of the x axis.
const LO: f64 = -3.0;
const HI: f64 = 1.0;

pub fn draw(path: &Path, title: &str, bars: &[Bar]) -> Result<()> {
    let text = load_font();
    let (w, row) = (1100i32, 26i32);
    let (left, right, top) = (380i32, 30i32, 60i32);
    let h = top + row * bars.len() as i32 + 50;
    let root = BitMapBackend::new(path, (w as u32, h as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    let x_of = |r: f64| -> i32 {
        let l = if r > 0.0 { r.log10() } else { LO };
        let f = ((l - LO) / (HI - LO)).clamp(0.0, 1.0);
        left + (f * f64::from(w - left - right)) as i32
    };
    let font = |size: i32| ("sans-serif", size).into_font();
    let put = |s: &str, x: i32, y: i32, size: i32| {
        if text {
            let _ = root.draw(&Text::new(s.to_owned(), (x, y), font(size)));
        }
    };
    put(title, 10, 10, 18);
    put(
        "ratio = ls-engine / litestream (log scale); | = target; green met, red not, grey n/a",
        10,
        34,
        13,
    );
    // Grid lines at each power of ten, and a heavier one at 1.0.
    let bottom = top + row * bars.len() as i32;
    let mut p = LO;
    while p <= HI + 1e-9 {
        let x = x_of(10f64.powf(p));
        let style = if p.abs() < 1e-9 {
            BLACK
        } else {
            RGBColor(200, 200, 200)
        };
        root.draw(&PathElement::new(vec![(x, top - 4), (x, bottom)], style))
            .map_err(|e| anyhow!("{e:?}"))?;
        put(&format!("{}", 10f64.powf(p)), x - 10, bottom + 6, 12);
        p += 1.0;
    }
    for (i, b) in bars.iter().enumerate() {
        let y = top + row * i as i32;
        put(&b.label, 8, y + 6, 13);
        let color = match b.met {
            Some(true) => RGBColor(60, 160, 80),
            Some(false) => RGBColor(210, 60, 50),
            None => RGBColor(150, 150, 150),
        };
        if b.ratio.is_finite() {
            let (x0, x1) = (x_of(1.0), x_of(b.ratio));
            let (a, c) = (x0.min(x1), x0.max(x1).max(x0.min(x1) + 2));
            root.draw(&Rectangle::new(
                [(a, y + 4), (c, y + row - 4)],
                color.filled(),
            ))
            .map_err(|e| anyhow!("{e:?}"))?;
            let label = format!("{:.3}x", b.ratio);
            put(&label, (c + 4).min(w - 70), y + 6, 12);
        }
        if let Some(t) = b.target {
            let x = x_of(t);
            root.draw(&Rectangle::new(
                [(x - 1, y + 1), (x + 1, y + row - 1)],
                BLACK.filled(),
            ))
            .map_err(|e| anyhow!("{e:?}"))?;
        }
    }
    root.present().map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}
