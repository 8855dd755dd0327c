//! Real peers on loopback: [`Tgtd`], [`Istgt`], a tshark [`Capture`] per
//! cell, and a [`LiveCapture`] that many cells share.
//!
//! Every daemon gets a fresh free port and a scratch directory on tmpfs
//! (`/dev/shm`), so several instances can run side by side (also from other
//! processes). Every spawned process is recorded in a process-wide registry
//! so that the runner's watchdog can SIGKILL them all before it exits
//! ([`kill_all`]); a normal `Drop` stops them politely first.

mod capture;
mod istgt;
mod live;
mod tgtd;

pub use capture::{analyze, Capture, CaptureReport};
pub use istgt::{Istgt, IstgtConfig};
pub use live::{parse_live_line, sentinel_token, LiveCapture, LiveFrame, LiveReport, Window};
pub use tgtd::{Tgtd, TgtdConfig, TGTD_SETTABLE_KEYS};

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
static SCRATCH_SEQ: AtomicU32 = AtomicU32::new(0);
static SCRATCH_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Records a spawned process so that [`kill_all`] can reap it.
pub fn register_pid(pid: u32) {
    if let Ok(mut v) = PIDS.lock() {
        v.push(pid);
    }
}

/// Forgets a process after it was stopped normally.
pub fn unregister_pid(pid: u32) {
    if let Ok(mut v) = PIDS.lock() {
        v.retain(|p| *p != pid);
    }
}

/// SIGKILLs every registered process and removes every live scratch
/// directory (used by the watchdog before exit, when no `Drop` will run).
pub fn kill_all() {
    let pids: Vec<u32> = match PIDS.lock() {
        Ok(v) => v.clone(),
        Err(p) => p.into_inner().clone(),
    };
    for pid in pids {
        crate::tools::signal(pid, "KILL");
    }
    let dirs: Vec<PathBuf> = match SCRATCH_DIRS.lock() {
        Ok(v) => v.clone(),
        Err(p) => p.into_inner().clone(),
    };
    for d in dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Picks a TCP port on 127.0.0.1 that is free right now and was not handed
/// out before by this process (the kernel may still give it to someone else
/// before the caller binds it: callers retry on a bind failure).
pub fn free_port() -> Result<u16, String> {
    for _ in 0..64 {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
        let port = l
            .local_addr()
            .map_err(|e| format!("local_addr: {e}"))?
            .port();
        drop(l);
        let mut guard = HANDED_OUT.lock().map_err(|_| "port registry poisoned")?;
        let set = guard.get_or_insert_with(HashSet::new);
        if set.insert(port) {
            return Ok(port);
        }
    }
    Err("no fresh free port after 64 tries".into())
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, limit: Duration) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + limit;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "nothing accepts on 127.0.0.1:{port} after {limit:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A scratch directory on tmpfs, removed on drop.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates `/dev/shm/iscsi-conf-<pid>-<seq>-<tag>` (falls back to the
    /// system temp dir when /dev/shm is missing).
    pub fn new(tag: &str) -> Result<Scratch, String> {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let seq = SCRATCH_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = base.join(format!("iscsi-conf-{}-{seq}-{tag}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        if let Ok(mut v) = SCRATCH_DIRS.lock() {
            v.push(path.clone());
        }
        Ok(Scratch { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates a sparse file of `size` bytes in the directory (a LUN image).
    pub fn sparse_file(&self, name: &str, size: u64) -> Result<PathBuf, String> {
        let p = self.path.join(name);
        let f = std::fs::File::create(&p).map_err(|e| format!("create {}: {e}", p.display()))?;
        f.set_len(size)
            .map_err(|e| format!("truncate {}: {e}", p.display()))?;
        Ok(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(mut v) = SCRATCH_DIRS.lock() {
            v.retain(|p| p != &self.path);
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Polls `child` for exit for up to `limit`; true if it exited.
pub(crate) fn wait_exit(child: &mut std::process::Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) => {}
            Err(_) => return false,
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Last `n` lines of a log file (for error messages).
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    std::fs::read(path)
        .map(|b| crate::tools::tail(&String::from_utf8_lossy(&b), n))
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let a = free_port().unwrap();
        let b = free_port().unwrap();
        assert_ne!(a, b);
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, a)).unwrap();
        wait_for_port(a, Duration::from_secs(2)).unwrap();
        drop(l);
    }

    #[test]
    fn scratch_is_removed_on_drop() {
        let s = Scratch::new("t").unwrap();
        let f = s.sparse_file("x.img", 1 << 20).unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().len(), 1 << 20);
        let dir = s.path().to_path_buf();
        drop(s);
        assert!(!dir.exists());
    }
}
