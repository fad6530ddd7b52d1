//! A workload's results as a terminal table, a markdown report and a latency chart (SVG), the
//! last two written to `bench/results/<workload>.md` and `.svg` so a run can be committed and
//! compared in review.

use std::fmt::Write as _;
use std::path::Path;

/// One router (or variant) in one mode.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    /// For the chart's labels.
    pub short: String,
    pub rps: f64,
    /// Throughput against the table's baseline (its first row).
    pub ratio: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub cpu_s_per_1000: f64,
    pub peak_rss_mb: f64,
    pub failed: u64,
}

pub struct Report {
    workload: &'static str,
    title: &'static str,
    notes: Vec<String>,
    pub tables: Vec<(String, Vec<Row>)>,
}

impl Report {
    pub fn new(workload: &'static str, title: &'static str) -> Self {
        Self {
            workload,
            title,
            notes: Vec::new(),
            tables: Vec::new(),
        }
    }

    pub fn note(&mut self, text: &str) {
        self.notes.push(text.to_owned());
    }

    pub fn table(&mut self, mode: &str, rows: Vec<Row>) {
        self.tables.push((mode.to_owned(), rows));
    }

    pub fn print(&self) {
        println!("\n{}", self.title);
        for (mode, rows) in &self.tables {
            println!("\n  {mode}");
            println!(
                "  {:<50} {:>8} {:>7} {:>8} {:>8} {:>8} {:>10} {:>9} {:>7}",
                "router",
                "req/s",
                "ratio",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "CPU s/1k",
                "peak MB",
                "failed"
            );
            for r in rows {
                println!(
                    "  {:<50} {:>8.0} {:>6.2}x {:>8.2} {:>8.2} {:>8.2} {:>10.3} {:>9.0} {:>7}",
                    r.name,
                    r.rps,
                    r.ratio,
                    r.p50_ms,
                    r.p95_ms,
                    r.p99_ms,
                    r.cpu_s_per_1000,
                    r.peak_rss_mb,
                    r.failed
                );
            }
        }
        for note in &self.notes {
            println!("\n{note}");
        }
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("# {}\n\n", self.title);
        let _ = writeln!(
            out,
            "Written by `./scripts/bench {}` on {} ({} cores); chart: [{}.svg]({}.svg).\n",
            self.workload,
            timestamp(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            self.workload,
            self.workload
        );
        for note in &self.notes {
            let _ = writeln!(out, "{note}\n");
        }
        for (mode, rows) in &self.tables {
            let _ = writeln!(out, "## {mode}\n");
            out.push_str("| router | req/s | ratio | p50 ms | p95 ms | p99 ms | CPU s / 1,000 req | peak RSS MB | failed |\n");
            out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
            for r in rows {
                let _ = writeln!(
                    out,
                    "| {} | {:.0} | {:.2}x | {:.2} | {:.2} | {:.2} | {:.3} | {:.0} | {} |",
                    r.name,
                    r.rps,
                    r.ratio,
                    r.p50_ms,
                    r.p95_ms,
                    r.p99_ms,
                    r.cpu_s_per_1000,
                    r.peak_rss_mb,
                    r.failed
                );
            }
            out.push('\n');
        }
        out
    }

    /// p50/p95/p99 per router and mode, horizontal bars on a log scale (the fastest and the
    /// slowest differ by two orders of magnitude).
    pub fn svg(&self) -> String {
        let (left, width, bar, gap) = (190.0, 520.0, 7.0, 10.0);
        let max = self
            .tables
            .iter()
            .flat_map(|(_, rows)| rows.iter().map(|r| r.p99_ms))
            .fold(1.0_f64, f64::max);
        let (lo, hi) = (0.1_f64.log10(), (max * 1.5).log10().ceil());
        let x = |ms: f64| left + width * ((ms.max(0.1).log10() - lo) / (hi - lo));
        let mut body = String::new();
        let mut y = 56.0;
        for (mode, rows) in &self.tables {
            let _ = writeln!(
                body,
                r#"<text x="10" y="{y}" font-weight="bold">{}</text>"#,
                escape(mode)
            );
            y += 10.0;
            for r in rows {
                let _ = writeln!(
                    body,
                    r#"<text x="{:.0}" y="{:.0}" text-anchor="end">{}</text>"#,
                    left - 6.0,
                    y + 2.0 * bar,
                    escape(&r.short)
                );
                for (i, (value, color)) in [
                    (r.p50_ms, "#4e79a7"),
                    (r.p95_ms, "#f28e2b"),
                    (r.p99_ms, "#e15759"),
                ]
                .into_iter()
                .enumerate()
                {
                    let top = y + i as f64 * bar;
                    let _ = writeln!(
                        body,
                        r#"<rect x="{left}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{}: {value:.2} ms</title></rect>"#,
                        (x(value) - left).max(1.0),
                        bar - 1.0,
                        escape(&r.name)
                    );
                }
                let _ = writeln!(
                    body,
                    r#"<text x="{:.1}" y="{:.1}" font-size="10">{:.1} / {:.1} / {:.1} ms</text>"#,
                    x(r.p99_ms) + 4.0,
                    y + 2.0 * bar,
                    r.p50_ms,
                    r.p95_ms,
                    r.p99_ms
                );
                y += 3.0 * bar + gap;
            }
            y += 14.0;
        }
        let mut axis = String::new();
        let mut decade = lo;
        while decade <= hi + 1e-9 {
            let ms = 10f64.powf(decade);
            let px = x(ms);
            let _ = writeln!(
                axis,
                r##"<line x1="{px:.1}" y1="44" x2="{px:.1}" y2="{:.0}" stroke="#ddd"/><text x="{px:.1}" y="{:.0}" text-anchor="middle" font-size="10">{} ms</text>"##,
                y - 10.0,
                y + 4.0,
                if ms < 1.0 {
                    format!("{ms:.1}")
                } else {
                    format!("{ms:.0}")
                }
            );
            decade += 1.0;
        }
        let height = y + 30.0;
        format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{:.0}" height="{height:.0}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="18" font-size="14">{}</text>
<text x="10" y="34" font-size="11">latency p50 (blue), p95 (orange), p99 (red), log scale</text>
{axis}{body}</svg>
"##,
            left + width + 160.0,
            escape(self.title)
        )
    }

    /// Prints the report and writes it under the repository's `bench/results/`.
    pub fn publish(&self, repo: &Path) -> anyhow::Result<()> {
        self.print();
        let written = self.write(&repo.join("bench/results"))?;
        println!("\nwrote {}", written.join(", "));
        Ok(())
    }

    /// Writes `<workload>.md` and `<workload>.svg` under `dir`; returns their paths.
    pub fn write(&self, dir: &Path) -> anyhow::Result<Vec<String>> {
        std::fs::create_dir_all(dir)?;
        let md = dir.join(format!("{}.md", self.workload));
        let svg = dir.join(format!("{}.svg", self.workload));
        std::fs::write(&md, self.markdown())?;
        std::fs::write(&svg, self.svg())?;
        Ok(vec![md.display().to_string(), svg.display().to_string()])
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// UTC date and time, from the system clock (no time-zone database needed).
fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// A line chart of `(seconds, MB)` samples, the y axis from zero (so a flat line looks flat).
pub fn line_chart(title: &str, samples: &[(f64, f64)]) -> String {
    let (left, top, width, height) = (60.0, 30.0, 640.0, 240.0);
    let t_max = samples.iter().map(|s| s.0).fold(1.0_f64, f64::max);
    let y_max = (samples.iter().map(|s| s.1).fold(1.0_f64, f64::max) * 1.2 / 10.0).ceil() * 10.0;
    let points: Vec<String> = samples
        .iter()
        .map(|(t, mb)| {
            format!(
                "{:.1},{:.1}",
                left + width * t / t_max,
                top + height * (1.0 - mb / y_max)
            )
        })
        .collect();
    let mut grid = String::new();
    for i in 0..=4 {
        let mb = y_max * f64::from(i) / 4.0;
        let y = top + height * (1.0 - mb / y_max);
        let _ = writeln!(
            grid,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="10">{mb:.0} MB</text>"##,
            left + width,
            left - 4.0,
            y + 3.0
        );
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{:.0}" height="{:.0}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="18" font-size="14">{}</text>
{grid}<polyline fill="none" stroke="#4e79a7" stroke-width="1.5" points="{}"/>
<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="10">{t_max:.0} s</text>
</svg>
"##,
        left + width + 20.0,
        top + height + 30.0,
        escape(title),
        points.join(" "),
        left + width,
        top + height + 14.0
    )
}
