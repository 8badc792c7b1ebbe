//! `results.png`: throughput as a ratio of the ceiling, and latency percentiles, per scenario.
//! Text is drawn with DejaVu Sans (Debian's fonts-dejavu-core, which `make bench` installs).

use std::path::Path;

use anyhow::{Context, anyhow};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::results::ScenarioResult;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

pub fn draw(results: &[ScenarioResult], path: &Path) -> anyhow::Result<()> {
    let font = std::fs::read(FONT)
        .with_context(|| format!("font {FONT} (Debian package fonts-dejavu-core)"))?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow!("cannot load {FONT}"))?;

    let n = results.len();
    let height = 140 + 46 * n as u32;
    let root = BitMapBackend::new(path, (1500, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(760);

    let max_ratio = results
        .iter()
        .map(|r| r.ratio_to_ceiling)
        .fold(1.0, f64::max)
        * 1.35;
    let mut chart = ChartBuilder::on(&left)
        .caption(
            "Throughput (x static ceiling, same run)",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(330)
        .build_cartesian_2d(0f64..max_ratio, 0f64..n as f64)?;
    let labels: Vec<String> = results.iter().map(|r| r.label.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n * 2 + 1)
        .y_label_formatter(&|y| {
            let i = (n as f64 - y - 0.5).round();
            if (n as f64 - y - 0.5 - i).abs() < 0.01 && i >= 0.0 && (i as usize) < n {
                labels[i as usize].clone()
            } else {
                String::new()
            }
        })
        .x_desc("requests/s ÷ ceiling requests/s")
        .label_style(("sans-serif", 15))
        .draw()?;
    for (i, r) in results.iter().enumerate() {
        let y = (n - 1 - i) as f64;
        let color = if i == 0 {
            RGBColor(120, 120, 120)
        } else {
            RGBColor(52, 110, 180)
        };
        chart.draw_series(std::iter::once(Rectangle::new(
            [(0.0, y + 0.15), (r.ratio_to_ceiling, y + 0.85)],
            color.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{:.2}x  ({:.0}/s)", r.ratio_to_ceiling, r.median.rps),
            (r.ratio_to_ceiling + max_ratio * 0.01, y + 0.35),
            ("sans-serif", 14),
        )))?;
    }

    let max_ms = results.iter().map(|r| r.median.p999_ms).fold(0.1, f64::max) * 1.2;
    let mut chart = ChartBuilder::on(&right)
        .caption("Latency p50 / p99 / p99.9 (ms)", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(10)
        .build_cartesian_2d((0.01f64..max_ms).log_scale(), 0f64..n as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc("milliseconds (log scale)")
        .label_style(("sans-serif", 15))
        .draw()?;
    let series = [
        ("p50", RGBColor(90, 170, 90), 0.0),
        ("p99", RGBColor(230, 160, 40), 0.25),
        ("p99.9", RGBColor(200, 70, 60), 0.5),
    ];
    for (name, color, offset) in series {
        chart
            .draw_series(results.iter().enumerate().map(|(i, r)| {
                let y = (n - 1 - i) as f64 + 0.15 + offset;
                let v = match name {
                    "p50" => r.median.p50_ms,
                    "p99" => r.median.p99_ms,
                    _ => r.median.p999_ms,
                };
                Rectangle::new([(0.01, y), (v.max(0.011), y + 0.22)], color.filled())
            }))?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}
