//! The initiator core with no I/O: a whole submit -> transmit -> response
//! -> completion cycle per 4 KiB read and write, against an in-memory
//! responder (see `io_support.rs`), in ns per I/O; and allocations per
//! I/O, counted by a global allocator wrapping `System` (this bench binary
//! only; the crate itself forbids unsafe code).
//!
//! Run with `cargo bench -p iscsi-proto --bench io`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod io_support;
use io_support::IoLoop;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

struct Counting;

// SAFETY: every call is forwarded unchanged to `System`; counting is one
// relaxed atomic add.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Prints the steady-state allocations per I/O for one case.
fn report_allocs(name: &str, qd: usize, write: bool) {
    let mut l = IoLoop::new();
    for _ in 0..200 {
        l.batch(qd, write);
    }
    let rounds = 1000;
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..rounds {
        l.batch(qd, write);
    }
    let n = ALLOCS.load(Ordering::Relaxed) - before;
    println!(
        "allocations per I/O, {name}: {:.3}",
        n as f64 / (rounds * qd) as f64
    );
}

fn io(c: &mut Criterion) {
    for (name, qd, write) in [
        ("4k read qd1", 1, false),
        ("4k read qd32", 32, false),
        ("4k write qd1", 1, true),
        ("4k write qd32", 32, true),
    ] {
        report_allocs(name, qd, write);
        let mut g = c.benchmark_group("initiator cycle");
        // Throughput in elements: criterion then also prints I/Os per
        // second; the time per iteration divided by `qd` is ns per I/O.
        g.throughput(Throughput::Elements(qd as u64));
        let mut l = IoLoop::new();
        g.bench_function(name, |b| b.iter(|| l.batch(qd, write)));
        g.finish();
    }
}

criterion_group!(benches, io);
criterion_main!(benches);
