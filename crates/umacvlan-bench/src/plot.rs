//! SVG plots (plotters, SVG backend): one bar chart per data-plane metric (median bar,
//! min–max whisker, one bar per system), the control-plane times against N, and the
//! data-plane cost against the number of macvlans on the lower.

use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::control::Method;
use crate::report::{num, Results, FLOOR, REFERENCE};
use crate::stats::Summary;

/// The data-plane metrics that get a bar chart: (key, title, unit, scale).
pub const BAR_METRICS: [(&str, &str, &str, f64); 9] = [
    (
        "tcp1_gbps",
        "iperf3 TCP, 1 stream",
        "Gbit/s (higher is better)",
        1.0,
    ),
    (
        "tcp2_gbps",
        "iperf3 TCP, 2 streams",
        "Gbit/s (higher is better)",
        1.0,
    ),
    (
        "udp64_pps",
        "UDP 64-byte datagrams received",
        "kpps (higher is better)",
        1e-3,
    ),
    (
        "ping_avg_us",
        "ping round trip, average",
        "µs (lower is better)",
        1.0,
    ),
    (
        "ping_p99_us",
        "ping round trip, 99th percentile",
        "µs (lower is better)",
        1.0,
    ),
    (
        "l2_delivered_pps",
        "60-byte frames delivered",
        "Mpps (higher is better)",
        1e-6,
    ),
    (
        "l2_loss_pct",
        "60-byte frames lost",
        "% of offered (lower is better)",
        1.0,
    ),
    (
        "l2_switch_ns_per_frame",
        "switching process CPU per forwarded 60-byte frame (×: vs tapfwd)",
        "ns (lower is better)",
        1.0,
    ),
    (
        "switch_rss_kib",
        "switching process RSS (×: vs tapfwd)",
        "MiB (lower is better)",
        1.0 / 1024.0,
    ),
];

const FONT: &str = "sans-serif";

fn color_of(system: &str) -> RGBColor {
    match system {
        REFERENCE => RGBColor(90, 90, 90),
        s if s.starts_with("umacvlan") => RGBColor(31, 119, 180),
        "tapfwd" => RGBColor(255, 127, 14),
        s if s.starts_with("kernel") => RGBColor(150, 150, 150),
        _ => RGBColor(44, 160, 44),
    }
}

/// The SVG files [`draw_all`] makes for `r`, in report order.
pub fn files(r: &Results) -> Vec<String> {
    let mut v = Vec::new();
    for (key, ..) in BAR_METRICS {
        if r.samples.iter().any(|s| s.metric == key && s.n.is_none()) {
            v.push(format!("{key}.svg"));
        }
    }
    if r.samples.iter().any(|s| s.metric == "create_up_ms") {
        v.push("control_plane.svg".into());
    }
    if r.samples.iter().any(|s| s.metric == "users_create_ms") {
        v.push("control_users.svg".into());
    }
    if r.samples.iter().any(|s| s.metric.starts_with("scale_")) {
        v.push("scale.svg".into());
    }
    v
}

/// Draws every plot of `r` into `dir`.
pub fn draw_all(r: &Results, dir: &Path) -> Result<Vec<String>, String> {
    let made = files(r);
    for (key, title, unit, scale) in BAR_METRICS {
        if !made.contains(&format!("{key}.svg")) {
            continue;
        }
        let items: Vec<(String, Summary)> = r
            .ran()
            .into_iter()
            .filter_map(|s| r.summary(&s, key, None).map(|x| (s, x)))
            .collect();
        let reference = if key.starts_with("l2_switch") || key.starts_with("switch_") {
            FLOOR
        } else {
            REFERENCE
        };
        bars(
            &dir.join(format!("{key}.svg")),
            title,
            unit,
            scale,
            &items,
            reference,
        )?;
    }
    if made.iter().any(|f| f == "control_plane.svg") {
        control(r, &dir.join("control_plane.svg"))?;
    }
    if made.iter().any(|f| f == "control_users.svg") {
        control_users(r, &dir.join("control_users.svg"))?;
    }
    if made.iter().any(|f| f == "scale.svg") {
        scaling(r, &dir.join("scale.svg"))?;
    }
    Ok(made)
}

/// The users' control-plane test: milliseconds per block of 100 adds against the number of
/// macvlans made so far (flat is what the issue asks), per method, median over repetitions.
fn control_users(r: &Results, path: &Path) -> Result<(), String> {
    let mut lines: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for m in crate::runner::USERS_METHODS {
        let sys = format!("users-{m}");
        let blocks: Vec<Vec<f64>> = r
            .runs
            .iter()
            .filter(|x| x["part"] == "control-users" && x["system"] == sys.as_str())
            .filter_map(|x| {
                x["detail"]["blocks_ms"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
            })
            .collect();
        let len = blocks.iter().map(Vec::len).min().unwrap_or(0);
        let pts: Vec<(f64, f64)> = (0..len)
            .filter_map(|i| {
                let v: Vec<f64> = blocks.iter().map(|b| b[i]).collect();
                crate::stats::summarize(&v).map(|s| (((i + 1) * 100) as f64, s.median))
            })
            .collect();
        if !pts.is_empty() {
            lines.push((m.to_string(), pts));
        }
    }
    let all: Vec<f64> = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .collect();
    if all.is_empty() {
        return Ok(());
    }
    let (ylo, yhi) = log_range(
        all.iter().copied().fold(f64::MAX, f64::min),
        all.iter().copied().fold(0.0, f64::max),
    );
    let xhi = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
        .fold(100.0, f64::max);
    let root = SVGBackend::new(path, (820, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Control plane as users run it: each block of 100 adds",
            (FONT, 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xhi + 50.0, (ylo..yhi).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("macvlans made (end of the block)")
        .y_desc("ms per 100 (lower is better)")
        .light_line_style(WHITE)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| num(*y))
        .label_style((FONT, 13))
        .draw()
        .map_err(e)?;
    let colors = [
        RGBColor(90, 90, 90),
        RGBColor(170, 170, 170),
        RGBColor(31, 119, 180),
        RGBColor(23, 190, 207),
        RGBColor(214, 39, 40),
    ];
    for (i, (m, pts)) in lines.iter().enumerate() {
        let c = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
            .map_err(e)?
            .label(m.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled())))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 12))
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

fn e<E: std::fmt::Debug>(x: E) -> String {
    format!("plot: {x:?}")
}

/// Horizontal bars: one per system, median with a min–max whisker, the value and its ratio
/// to `reference`'s median.
fn bars(
    path: &Path,
    title: &str,
    unit: &str,
    scale: f64,
    items: &[(String, Summary)],
    reference: &str,
) -> Result<(), String> {
    if items.is_empty() {
        return Ok(());
    }
    // plotters puts segment 0 at the bottom: draw the first system at the top.
    let items: Vec<(String, Summary)> = items.iter().rev().cloned().collect();
    let n = items.len();
    let xmax = items
        .iter()
        .map(|(_, s)| s.max * scale)
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.25;
    let height = 90 + 34 * n as u32;
    let root = SVGBackend::new(path, (820, height)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(190)
        .build_cartesian_2d(0f64..xmax, (0..n).into_segmented())
        .map_err(e)?;
    let names: Vec<String> = items.iter().map(|(s, _)| s.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                names.get(*i).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .x_desc(unit)
        .label_style((FONT, 13))
        .draw()
        .map_err(e)?;
    chart
        .draw_series(items.iter().enumerate().map(|(i, (sys, s))| {
            let mut r = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (s.median * scale, SegmentValue::Exact(i + 1)),
                ],
                color_of(sys).filled(),
            );
            r.set_margin(6, 6, 0, 0);
            r
        }))
        .map_err(e)?;
    chart
        .draw_series(items.iter().enumerate().map(|(i, (_, s))| {
            PathElement::new(
                vec![
                    (s.min * scale, SegmentValue::CenterOf(i)),
                    (s.max * scale, SegmentValue::CenterOf(i)),
                ],
                BLACK.stroke_width(2),
            )
        }))
        .map_err(e)?;
    let reference = items
        .iter()
        .find(|(s, _)| s == reference)
        .map(|(_, s)| s.median);
    chart
        .draw_series(items.iter().enumerate().map(|(i, (_, s))| {
            let mut t = num(s.median * scale);
            if let Some(k) = reference.filter(|k| *k != 0.0) {
                t.push_str(&format!("  ×{:.2}", s.median / k));
            }
            Text::new(
                t,
                (s.max * scale + xmax * 0.01, SegmentValue::CenterOf(i)),
                (FONT, 12).into_font().color(&BLACK),
            )
        }))
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

fn log_range(lo: f64, hi: f64) -> (f64, f64) {
    let lo = lo.max(1e-6);
    let hi = hi.max(lo * 10.0);
    (lo / 1.5, hi * 1.5)
}

/// Control plane: create+up time against N, one line per method (log–log).
fn control(r: &Results, path: &Path) -> Result<(), String> {
    let mut ns: Vec<u64> = r
        .samples
        .iter()
        .filter(|s| s.metric == "create_up_ms")
        .filter_map(|s| s.n)
        .collect();
    ns.sort_unstable();
    ns.dedup();
    let lines: Vec<(Method, Vec<(f64, Summary)>)> = Method::ALL
        .into_iter()
        .map(|m| {
            let pts = ns
                .iter()
                .filter_map(|n| {
                    r.summary(m.id(), "create_up_ms", Some(*n))
                        .map(|s| (*n as f64, s))
                })
                .collect();
            (m, pts)
        })
        .collect();
    let all: Vec<f64> = lines
        .iter()
        .flat_map(|(_, p)| p.iter().flat_map(|(_, s)| [s.min, s.max]))
        .collect();
    if all.is_empty() {
        return Ok(());
    }
    let (ylo, yhi) = log_range(
        all.iter().copied().fold(f64::MAX, f64::min),
        all.iter().copied().fold(0.0, f64::max),
    );
    let (xlo, xhi) = log_range(
        *ns.first().unwrap_or(&1) as f64,
        *ns.last().unwrap_or(&1000) as f64,
    );
    let root = SVGBackend::new(path, (820, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Create and bring up N macvlans", (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((xlo..xhi).log_scale(), (ylo..yhi).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("N macvlans")
        .y_desc("ms (lower is better)")
        .light_line_style(WHITE)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| num(*y))
        .label_style((FONT, 13))
        .draw()
        .map_err(e)?;
    let colors = [
        RGBColor(90, 90, 90),
        RGBColor(170, 170, 170),
        RGBColor(31, 119, 180),
        RGBColor(23, 190, 207),
    ];
    for (i, (m, pts)) in lines.iter().enumerate() {
        let c = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|(x, s)| (*x, s.median)),
                c.stroke_width(2),
            ))
            .map_err(e)?
            .label(m.label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(
                pts.iter()
                    .map(|(x, s)| Circle::new((*x, s.median), 4, c.filled())),
            )
            .map_err(e)?;
        chart
            .draw_series(
                pts.iter().map(|(x, s)| {
                    PathElement::new(vec![(*x, s.min), (*x, s.max)], c.stroke_width(1))
                }),
            )
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 12))
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

/// Data plane against the number of macvlans on the lower: delivered rate and ping.
fn scaling(r: &Results, path: &Path) -> Result<(), String> {
    let mut ns: Vec<u64> = r
        .samples
        .iter()
        .filter(|s| s.metric.starts_with("scale_"))
        .filter_map(|s| s.n)
        .collect();
    ns.sort_unstable();
    ns.dedup();
    let root = SVGBackend::new(path, (1000, 820)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let panels = root.split_evenly((2, 2));
    let specs = [
        (
            "scale_l2_delivered_pps",
            "60-byte frames delivered",
            "Mpps (higher is better)",
            1e-6,
        ),
        (
            "scale_l2_switch_ns_per_frame",
            "switch CPU per forwarded frame",
            "ns (lower is better)",
            1.0,
        ),
        (
            "scale_idle_cpu_pct",
            "switch CPU with no traffic",
            "% of a core (lower is better)",
            1.0,
        ),
        (
            "scale_ping_avg_us",
            "ping round trip, average",
            "µs (lower is better)",
            1.0,
        ),
    ];
    let (xlo, xhi) = log_range(
        *ns.first().unwrap_or(&2) as f64,
        *ns.last().unwrap_or(&1000) as f64,
    );
    for (panel, (key, title, unit, scale)) in panels.iter().zip(specs) {
        let lines: Vec<(&str, Vec<(f64, Summary)>)> = crate::scale::KINDS
            .iter()
            .map(|k| k.id())
            .map(|sys| {
                (
                    sys,
                    ns.iter()
                        .filter_map(|n| r.summary(sys, key, Some(*n)).map(|s| (*n as f64, s)))
                        .collect(),
                )
            })
            .collect();
        let ymax = lines
            .iter()
            .flat_map(|(_, p)| p.iter().map(|(_, s)| s.max * scale))
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.2;
        let mut chart = ChartBuilder::on(panel)
            .caption(title, (FONT, 15))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d((xlo..xhi).log_scale(), 0f64..ymax)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("macvlans on the lower")
            .y_desc(unit)
            .light_line_style(WHITE)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| num(*y))
            .label_style((FONT, 12))
            .draw()
            .map_err(e)?;
        for (sys, pts) in &lines {
            if pts.is_empty() {
                continue;
            }
            let c = color_of(sys);
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|(x, s)| (*x, s.median * scale)),
                    c.stroke_width(2),
                ))
                .map_err(e)?
                .label(*sys)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart
                .draw_series(
                    pts.iter()
                        .map(|(x, s)| Circle::new((*x, s.median * scale), 4, c.filled())),
                )
                .map_err(e)?;
            chart
                .draw_series(pts.iter().map(|(x, s)| {
                    PathElement::new(
                        vec![(*x, s.min * scale), (*x, s.max * scale)],
                        c.stroke_width(1),
                    )
                }))
                .map_err(e)?;
        }
        if key == "scale_l2_delivered_pps" {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .label_font((FONT, 12))
                .draw()
                .map_err(e)?;
        }
    }
    root.present().map_err(e)?;
    Ok(())
}
