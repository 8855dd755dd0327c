//! A tiny test runner: a list of [`Cell`]s run in order, each under a
//! watchdog, results collected into a summary table.
//!
//! # Adding a cell
//!
//! ```no_run
//! use conformance::runner::Cell;
//! use conformance::peers::{Tgtd, TgtdConfig};
//! use std::time::Duration;
//!
//! let cell = Cell::new("tgtd", "my-initiator-login", |ctx| {
//!     let t = Tgtd::start(&TgtdConfig::default())?;
//!     // Everything inside `captured` is recorded by tshark; the capture
//!     // must decode cleanly and contain at least one iSCSI PDU.
//!     let report = ctx.captured(t.port(), || {
//!         // ... drive the initiator against t.portal(), t.iqn() ...
//!         Ok(())
//!     })?;
//!     ctx.note(format!("{} PDUs", report.iscsi_pdus));
//!     Ok(())
//! })
//! .with_timeout(Duration::from_secs(60));
//! ```
//!
//! A cell returns `Err(message)` to fail; a panic also fails it. If a cell
//! runs past its timeout, the watchdog prints which one, SIGKILLs every
//! registered peer process, prints the table so far and exits with code 3.

use crate::peers::{Capture, CaptureReport};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The body of a cell.
pub type CellFn = Box<dyn Fn(&mut CellCtx) -> Result<(), String> + Send + Sync>;

/// One named check.
pub struct Cell {
    /// Group (shown in the first column, e.g. `tgtd`, `istgt`, `baseline`).
    pub group: String,
    /// Name, unique within the group.
    pub name: String,
    /// Watchdog limit.
    pub timeout: Duration,
    /// The check itself.
    pub run: CellFn,
}

impl std::fmt::Debug for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cell")
            .field("group", &self.group)
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Default per-cell watchdog limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

impl Cell {
    /// A cell with the default timeout ([`DEFAULT_TIMEOUT`]).
    pub fn new<F>(group: &str, name: &str, run: F) -> Cell
    where
        F: Fn(&mut CellCtx) -> Result<(), String> + Send + Sync + 'static,
    {
        Cell {
            group: group.to_string(),
            name: name.to_string(),
            timeout: DEFAULT_TIMEOUT,
            run: Box::new(run),
        }
    }

    /// Sets the watchdog limit.
    pub fn with_timeout(mut self, t: Duration) -> Cell {
        self.timeout = t;
        self
    }

    /// `group/name`, what `--filter` matches against.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.group, self.name)
    }
}

/// What a cell gets: where to put artifacts, and a place for notes that
/// end up in the summary table.
#[derive(Debug)]
pub struct CellCtx {
    out_dir: PathBuf,
    slug: String,
    verbose: bool,
    notes: Vec<String>,
    next_cell: Option<String>,
}

impl CellCtx {
    /// A context writing artifacts to `out_dir` with file names prefixed by
    /// `slug`.
    pub fn new(out_dir: PathBuf, slug: &str, verbose: bool) -> CellCtx {
        CellCtx {
            out_dir,
            slug: slug.to_string(),
            verbose,
            notes: Vec::new(),
            next_cell: None,
        }
    }

    /// Sets the `group/name` of the cell that runs right after this one
    /// (the runner does; `None` for the last cell of the run).
    pub fn with_next_cell(mut self, next: Option<String>) -> CellCtx {
        self.next_cell = next;
        self
    }

    /// The `group/name` of the cell that runs right after this one, if
    /// any: cells that share a peer or a capture with the cells that
    /// follow them (e.g. the `matrix` group) release it when the next
    /// cell does not need it.
    pub fn next_cell(&self) -> Option<&str> {
        self.next_cell.as_deref()
    }

    /// The directory artifacts go to.
    pub fn out_dir(&self) -> &std::path::Path {
        &self.out_dir
    }

    /// Adds a note shown in the table's message column (also for passes).
    pub fn note(&mut self, s: impl Into<String>) {
        let s = s.into();
        self.log(&s);
        self.notes.push(s);
    }

    /// Prints a line when `--verbose` was given.
    pub fn log(&self, s: &str) {
        if self.verbose {
            eprintln!("    [{}] {}", self.slug, s);
        }
    }

    /// Notes gathered so far.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Path of an artifact of this cell: `<out>/<group>-<name>-<file>`.
    pub fn artifact(&self, file: &str) -> PathBuf {
        self.out_dir.join(format!("{}-{}", self.slug, file))
    }

    /// Runs `f` under a tshark capture of TCP `port` (artifact
    /// `capture.pcap`), then requires the capture to be clean and to hold at
    /// least one iSCSI PDU. Returns the report for further checks; notes
    /// the PDU count. If `f` fails, its error is returned (the pcap stays).
    pub fn captured<F>(&mut self, port: u16, f: F) -> Result<CaptureReport, String>
    where
        F: FnOnce() -> Result<(), String>,
    {
        self.captured_n(port, "capture.pcap", f)
    }

    /// Like [`CellCtx::captured`] with a chosen artifact name (for several
    /// captures in one cell).
    pub fn captured_n<F>(&mut self, port: u16, file: &str, f: F) -> Result<CaptureReport, String>
    where
        F: FnOnce() -> Result<(), String>,
    {
        let t0 = Instant::now();
        let cap = Capture::start(port, self.artifact(file))?;
        let t1 = Instant::now();
        let res = f();
        let t2 = Instant::now();
        let report = cap.stop();
        self.log(&format!(
            "capture start {:.2}s, body {:.2}s, stop+analyze {:.2}s",
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            t2.elapsed().as_secs_f64()
        ));
        res?;
        let report = report?;
        report.check_clean()?;
        if report.iscsi_pdus == 0 {
            return Err(format!(
                "capture {} holds no iSCSI PDU",
                report.pcap.display()
            ));
        }
        self.note(format!("{} PDUs clean", report.iscsi_pdus));
        Ok(report)
    }
}

/// Options of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Only cells whose `group/name` contains this substring.
    pub filter: Option<String>,
    /// Where artifacts (pcaps, tool outputs) go.
    pub out_dir: PathBuf,
    /// Print cell logs as they happen.
    pub verbose: bool,
}

/// The outcome of one cell.
#[derive(Debug, Clone)]
pub struct CellResult {
    /// Group.
    pub group: String,
    /// Name.
    pub name: String,
    /// Passed?
    pub passed: bool,
    /// Wall time.
    pub duration: Duration,
    /// Error (on failure) and notes.
    pub message: String,
}

/// Cells that `filter` selects, in order.
pub fn select(cells: Vec<Cell>, filter: Option<&str>) -> Vec<Cell> {
    cells
        .into_iter()
        .filter(|c| filter.is_none_or(|f| c.full_name().contains(f)))
        .collect()
}

struct Watch {
    current: Option<(String, Instant, Duration)>,
    results: Vec<CellResult>,
}

/// Runs the cells in order with a watchdog; returns all results.
pub fn run(cells: &[Cell], opts: &RunOptions) -> Vec<CellResult> {
    let _ = std::fs::create_dir_all(&opts.out_dir);
    let watch = Arc::new(Mutex::new(Watch {
        current: None,
        results: Vec::new(),
    }));
    let w2 = Arc::clone(&watch);
    std::thread::spawn(move || watchdog(w2));

    for (i, cell) in cells.iter().enumerate() {
        let full = cell.full_name();
        eprint!("  {full} ... ");
        let _ = std::io::stderr().flush();
        if let Ok(mut w) = watch.lock() {
            w.current = Some((full.clone(), Instant::now(), cell.timeout));
        }
        let slug = full.replace('/', "-");
        let next = cells.get(i + 1).map(Cell::full_name);
        let mut ctx = CellCtx::new(opts.out_dir.clone(), &slug, opts.verbose).with_next_cell(next);
        let start = Instant::now();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (cell.run)(&mut ctx)));
        let duration = start.elapsed();
        let (passed, err) = match outcome {
            Ok(Ok(())) => (true, None),
            Ok(Err(e)) => (false, Some(e)),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "(non-string panic)".into());
                (false, Some(format!("panicked: {msg}")))
            }
        };
        let mut parts: Vec<String> = Vec::new();
        if let Some(e) = err {
            parts.push(e);
        }
        parts.extend(ctx.notes().iter().cloned());
        let result = CellResult {
            group: cell.group.clone(),
            name: cell.name.clone(),
            passed,
            duration,
            message: parts.join("; "),
        };
        eprintln!(
            "{} ({:.1}s)",
            if passed { "ok" } else { "FAILED" },
            duration.as_secs_f64()
        );
        if !passed {
            eprintln!("      {}", result.message);
        }
        if let Ok(mut w) = watch.lock() {
            w.current = None;
            w.results.push(result);
        }
    }
    let out = match watch.lock() {
        Ok(w) => w.results.clone(),
        Err(p) => p.into_inner().results.clone(),
    };
    out
}

fn watchdog(watch: Arc<Mutex<Watch>>) {
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let Ok(w) = watch.lock() else { return };
        let Some((name, started, limit)) = w.current.clone() else {
            continue;
        };
        if started.elapsed() < limit {
            continue;
        }
        eprintln!();
        eprintln!(
            "WATCHDOG: cell {name} still running after its limit of {}s: killing peers and exiting",
            limit.as_secs()
        );
        crate::peers::kill_all();
        let mut results = w.results.clone();
        let (group, cell) = name.split_once('/').unwrap_or(("?", &name));
        results.push(CellResult {
            group: group.to_string(),
            name: cell.to_string(),
            passed: false,
            duration: started.elapsed(),
            message: format!("hung: killed by the watchdog after {}s", limit.as_secs()),
        });
        print!("{}", summary_table(&results));
        println!("{}", counts_line(&results));
        let _ = std::io::stdout().flush();
        std::process::exit(3);
    }
}

/// The final `N passed, M failed` line.
pub fn counts_line(results: &[CellResult]) -> String {
    let passed = results.iter().filter(|r| r.passed).count();
    format!("{} passed, {} failed", passed, results.len() - passed)
}

const MSG_WIDTH: usize = 110;

/// Renders the summary table (group, cell, result, duration, message).
pub fn summary_table(results: &[CellResult]) -> String {
    let gw = results
        .iter()
        .map(|r| r.group.len())
        .chain([5])
        .max()
        .unwrap_or(5);
    let nw = results
        .iter()
        .map(|r| r.name.len())
        .chain([4])
        .max()
        .unwrap_or(4);
    let mut s = String::new();
    let line = format!(
        "{:-<gw$}-+-{:-<nw$}-+--------+---------+-{:-<20}\n",
        "", "", ""
    );
    s.push_str(&format!(
        "{:<gw$} | {:<nw$} | {:<6} | {:>7} | message\n",
        "group", "cell", "result", "time"
    ));
    s.push_str(&line);
    for r in results {
        let mut msg: String = r.message.replace('\n', " ");
        if msg.chars().count() > MSG_WIDTH {
            msg = msg.chars().take(MSG_WIDTH - 3).collect::<String>() + "...";
        }
        s.push_str(&format!(
            "{:<gw$} | {:<nw$} | {:<6} | {:>6.1}s | {}\n",
            r.group,
            r.name,
            if r.passed { "pass" } else { "FAIL" },
            r.duration.as_secs_f64(),
            msg
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> RunOptions {
        RunOptions {
            filter: None,
            out_dir: std::env::temp_dir().join(format!("conf-runner-test-{}", std::process::id())),
            verbose: false,
        }
    }

    #[test]
    fn pass_fail_and_panic_are_recorded() {
        let cells = vec![
            Cell::new("g", "ok", |ctx| {
                ctx.note("hello");
                Ok(())
            }),
            Cell::new("g", "err", |_| Err("boom".into())),
            Cell::new("h", "panics", |_| panic!("oops")),
        ];
        let r = run(&cells, &opts());
        assert_eq!(r.len(), 3);
        assert!(r[0].passed);
        assert_eq!(r[0].message, "hello");
        assert!(!r[1].passed);
        assert_eq!(r[1].message, "boom");
        assert!(!r[2].passed);
        assert!(r[2].message.contains("oops"), "{}", r[2].message);
        assert_eq!(counts_line(&r), "1 passed, 2 failed");
        let t = summary_table(&r);
        assert!(t.contains("g     | ok     | pass"), "{t}");
        assert!(t.contains("| FAIL   |"), "{t}");
        let _ = std::fs::remove_dir_all(opts().out_dir);
    }

    #[test]
    fn each_cell_learns_which_cell_follows() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mk = |name: &str| {
            let seen = Arc::clone(&seen);
            Cell::new("g", name, move |ctx| {
                if let Ok(mut v) = seen.lock() {
                    v.push(ctx.next_cell().map(str::to_string));
                }
                Ok(())
            })
        };
        let cells = vec![mk("a"), mk("b"), mk("c")];
        let r = run(&cells, &opts());
        assert!(r.iter().all(|x| x.passed));
        assert_eq!(
            *seen.lock().unwrap(),
            vec![Some("g/b".to_string()), Some("g/c".to_string()), None]
        );
        let _ = std::fs::remove_dir_all(opts().out_dir);
    }

    #[test]
    fn filter_matches_group_slash_name() {
        let mk = || {
            vec![
                Cell::new("tgtd", "inq", |_| Ok(())),
                Cell::new("istgt", "inq", |_| Ok(())),
                Cell::new("tgtd", "chap", |_| Ok(())),
            ]
        };
        assert_eq!(select(mk(), Some("tgtd/")).len(), 2);
        assert_eq!(select(mk(), Some("inq")).len(), 2);
        assert_eq!(select(mk(), Some("istgt/inq")).len(), 1);
        assert_eq!(select(mk(), None).len(), 3);
    }

    #[test]
    fn long_messages_are_cut() {
        let r = vec![CellResult {
            group: "g".into(),
            name: "n".into(),
            passed: false,
            duration: Duration::from_millis(1500),
            message: "x".repeat(500),
        }];
        let t = summary_table(&r);
        assert!(t.contains("1.5s"));
        assert!(t.lines().all(|l| l.len() < 200));
    }
}
