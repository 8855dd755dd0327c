//! Scenarios 15-22: filled in below.
use crate::runner::Cell;
pub(super) fn cells() -> Vec<Cell> {
    vec![]
}
