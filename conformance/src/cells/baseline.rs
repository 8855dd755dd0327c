//! `--baseline`: libiscsi's own conformance suite (`iscsi-test-cu`) against
//! tgtd, to have pass counts that the project's target role is compared to.

use crate::peers::{Tgtd, TgtdConfig};
use crate::runner::Cell;
use crate::tools::{run, IscsiUrl};
use std::time::Duration;

/// The "tests" row of a CUnit "Run Summary".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CunitSummary {
    /// Tests in the selected suites.
    pub total: u32,
    /// Tests that ran.
    pub ran: u32,
    /// Tests that passed.
    pub passed: u32,
    /// Tests that failed.
    pub failed: u32,
    /// Inactive tests.
    pub inactive: u32,
}

/// Parses the CUnit summary that `iscsi-test-cu` prints last:
///
/// ```text
/// Run Summary:    Type  Total    Ran Passed Failed Inactive
///               suites      4      4    n/a      0        0
///                tests     15     15     13      2        0
///              asserts    339    339    334      5      n/a
/// ```
///
/// Returns `None` if there is no `tests` row with five numbers.
/// (iscsi-test-cu exits 1 whenever a test failed, even with `-g`, so the
/// exit code says nothing; this row is the result.)
pub fn parse_cunit_summary(out: &str) -> Option<CunitSummary> {
    let after = out.rsplit_once("Run Summary:")?.1;
    for line in after.lines() {
        let mut it = line.split_whitespace();
        if it.next() != Some("tests") {
            continue;
        }
        let nums: Vec<u32> = it
            .map(|w| w.parse::<u32>())
            .collect::<Result<_, _>>()
            .ok()?;
        if let [total, ran, passed, failed, inactive] = nums[..] {
            return Some(CunitSummary {
                total,
                ran,
                passed,
                failed,
                inactive,
            });
        }
        return None;
    }
    None
}

fn suite_cell(family: &'static str, limit: Duration) -> Cell {
    Cell::new("baseline", &format!("iscsi-test-cu-{family}"), move |ctx| {
        let t = Tgtd::start(&TgtdConfig::default())?;
        let u = IscsiUrl::new(t.portal(), t.iqn(), 1).to_string();
        let out = run(limit, "iscsi-test-cu", &["-d", "--test", family, &u])?;
        let path = ctx.artifact("iscsi-test-cu.txt");
        let _ = std::fs::write(&path, format!("{}\n{}", out.stdout, out.stderr));
        if out.timed_out() {
            return Err(format!(
                "iscsi-test-cu timed out; output in {}",
                path.display()
            ));
        }
        let s = parse_cunit_summary(&out.stdout)
            .ok_or_else(|| format!("no CUnit summary: {}", out.describe()))?;
        if s.ran == 0 {
            return Err(format!("no test ran: {}", out.describe()));
        }
        let line = format!(
            "BASELINE {family}: {} passed, {} failed of {} run ({} total)",
            s.passed, s.failed, s.ran, s.total
        );
        println!("{line}");
        ctx.note(format!(
            "{} passed, {} failed of {} (output: {})",
            s.passed,
            s.failed,
            s.ran,
            path.display()
        ));
        Ok(())
    })
    .with_timeout(limit + Duration::from_secs(60))
}

/// The baseline cells (`iscsi-test-cu --test iSCSI` and `--test SCSI`).
pub fn baseline_cells() -> Vec<Cell> {
    vec![
        suite_cell("iSCSI", Duration::from_secs(300)),
        suite_cell("SCSI", Duration::from_secs(900)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Suite: iSCSITMF\n  Test: LUNResetSimpleAsync ...passed\n\n\
Run Summary:    Type  Total    Ran Passed Failed Inactive\n\
              suites      4      4    n/a      0        0\n\
               tests     15     15     13      2        0\n\
             asserts    339    339    334      5      n/a\n\n\
Elapsed time =    0.004 seconds\n";

    #[test]
    fn parses_the_tests_row() {
        assert_eq!(
            parse_cunit_summary(SAMPLE),
            Some(CunitSummary {
                total: 15,
                ran: 15,
                passed: 13,
                failed: 2,
                inactive: 0
            })
        );
    }

    #[test]
    fn rejects_missing_or_broken_summary() {
        assert_eq!(parse_cunit_summary("no summary here"), None);
        assert_eq!(
            parse_cunit_summary("Run Summary: Type\n   tests 1 2 x 4 5\n"),
            None
        );
        assert_eq!(parse_cunit_summary("Run Summary:\n tests 1 2 3\n"), None);
    }
}
