//! `iscsi bench --plot`: one SVG page of a run, drawn with `plotters`.
//!
//! Three panels sharing the page: IOPS per second, latency (p50 and p99) per
//! second, and the latency histogram; every axis has ticks, a name and a
//! unit, and the run's settings are printed above the panels. `plotters` is
//! used with its SVG backend only and no font files (text sizes are
//! estimated), so it adds no system dependency.

use plotters::coord::Shift;
use plotters::prelude::*;

use iscsi_proto::stats::LatencyHistogram;

use crate::bench::Report;

/// Draws `report` as an SVG document. `settings` is printed above the
/// panels, one line per entry (target, driver, pattern, block size, queue
/// depth, duration; whatever describes the run).
pub fn svg(report: &Report, title: &str, settings: &[String]) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (960, 900)).into_drawing_area();
        draw(&root, report, title, settings).map_err(|e| format!("cannot draw the plot: {e}"))?;
        root.present()
            .map_err(|e| format!("cannot draw the plot: {e}"))?;
    }
    Ok(out)
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &Report,
    title: &str,
    settings: &[String],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 22))?;
    let header = 24 + 18 * settings.len() as u32;
    let (top, rest) = root.split_vertically(header);
    let line = ("sans-serif", 15).into_font();
    top.draw_text(&r.summary(), &line.clone().into_text_style(&top), (20, 4))?;
    for (i, s) in settings.iter().enumerate() {
        top.draw_text(
            s,
            &line.clone().into_text_style(&top),
            (20, 24 + 18 * i as i32),
        )?;
    }
    let panels = rest.split_evenly((3, 1));
    let mut panels = panels.iter();
    if let Some(p) = panels.next() {
        iops_panel(p, r)?;
    }
    if let Some(p) = panels.next() {
        latency_panel(p, r)?;
    }
    if let Some(p) = panels.next() {
        histogram_panel(p, r)?;
    }
    Ok(())
}

/// The x range of the per-second series: seconds 1..=n (the sample of
/// second `i` covers `(i-1, i]`).
fn seconds_axis(n: usize) -> std::ops::Range<f64> {
    0.0..(n.max(1) as f64)
}

fn iops_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    r: &Report,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let max = r.per_second.iter().copied().max().unwrap_or(0).max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption("Throughput", ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(seconds_axis(r.per_second.len()), 0.0..max * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("I/Os per second")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            r.per_second
                .iter()
                .enumerate()
                .map(|(i, &n)| ((i + 1) as f64, n as f64)),
            BLUE.stroke_width(2),
        ))?
        .label("IOPS")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    Ok(())
}

fn latency_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    r: &Report,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let s = &r.latency_per_second;
    let max = s.iter().map(|l| l.p99_us).max().unwrap_or(0).max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption("Latency per second", ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(seconds_axis(s.len()), 0.0..max * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("latency (µs)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    let series = |pick: fn(&crate::bench::LatencySecond) -> u32| {
        s.iter()
            .enumerate()
            .map(move |(i, l)| ((i + 1) as f64, f64::from(pick(l))))
    };
    chart
        .draw_series(LineSeries::new(series(|l| l.p50_us), GREEN.stroke_width(2)))?
        .label("p50")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], GREEN.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(series(|l| l.p99_us), RED.stroke_width(2)))?
        .label("p99")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    Ok(())
}

/// The run's latencies in the core's log2 buckets of microseconds
/// ([`LatencyHistogram`]: bucket `b` holds `[2^(b-1), 2^b)` us).
fn histogram(lat_us: &[u32]) -> LatencyHistogram {
    let mut h = LatencyHistogram::default();
    for &l in lat_us {
        h.record(std::time::Duration::from_micros(u64::from(l)));
    }
    h
}

fn histogram_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    r: &Report,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let hist = histogram(&r.lat_us);
    let buckets = hist.buckets();
    let first = buckets.iter().position(|&n| n > 0).unwrap_or(0);
    let last = buckets.iter().rposition(|&n| n > 0).unwrap_or(first);
    let max = buckets.iter().copied().max().unwrap_or(0).max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption("Latency histogram", ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(first as f64..(last + 1) as f64, 0.0..max * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("latency (µs; each bar spans [2^(b-1), 2^b))")
        .y_desc("I/Os")
        .x_labels(last + 2 - first)
        // Bar `b` spans x in [b, b+1) and holds [2^(b-1), 2^b) us: the
        // tick at x = b is the bar's lower bound.
        .x_label_formatter(&|v| match v.round() as u32 {
            0 => "0".to_string(),
            b => format!("{}", 1u64 << (b - 1).min(40)),
        })
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    chart.draw_series(
        buckets
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(b, &n)| {
                Rectangle::new(
                    [(b as f64 + 0.05, 0.0), (b as f64 + 0.95, n as f64)],
                    RGBColor(230, 120, 20).filled(),
                )
            }),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::LatencySecond;
    use std::time::Duration;

    fn report() -> Report {
        Report {
            ios: 1000,
            bytes: 4_096_000,
            elapsed: Duration::from_secs(3),
            lat_us: (1..=1000).collect(),
            cpu_secs: 0.005,
            per_second: vec![300, 400, 300],
            latency_per_second: vec![
                LatencySecond {
                    p50_us: 150,
                    p99_us: 297,
                },
                LatencySecond {
                    p50_us: 500,
                    p99_us: 696,
                },
                LatencySecond {
                    p50_us: 850,
                    p99_us: 997,
                },
            ],
            counters: None,
        }
    }

    #[test]
    fn page_has_three_panels_with_axes_and_settings() {
        let svg = svg(&report(), "bench <x>", &["queue depth 32".into()]).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for text in [
            "bench &lt;x&gt;",
            "queue depth 32",
            "time (s)",
            "I/Os per second",
            "latency (µs)",
            "p50",
            "p99",
            "Latency histogram",
        ] {
            assert!(svg.contains(text), "missing {text:?}");
        }
        // Two line series plus the IOPS line.
        assert!(svg.matches("<polyline").count() >= 3);
    }

    #[test]
    fn histogram_buckets_are_log2() {
        let hist = histogram(&[1, 2, 3, 4, 1000, u32::MAX]);
        let h = hist.buckets();
        assert_eq!(h[1], 1); // 1 us
        assert_eq!(h[2], 2); // 2..3 us
        assert_eq!(h[3], 1); // 4 us
        assert_eq!(h[10], 1); // 512..1023 us
        assert_eq!(h[iscsi_proto::stats::LATENCY_BUCKETS - 1], 1); // the last bucket: 2^30 us and up
        assert_eq!(h.iter().sum::<u64>(), 6);
    }

    #[test]
    fn empty_report_still_draws() {
        let mut r = report();
        r.per_second.clear();
        r.latency_per_second.clear();
        r.lat_us.clear();
        assert!(svg(&r, "empty", &[]).is_ok());
    }
}
