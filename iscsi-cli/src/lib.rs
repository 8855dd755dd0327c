//! The `iscsi` tool is the binary of this package (`src/main.rs`). This
//! library holds the parts of it that tests drive directly: the driver
//! layer ([`driver`], `--driver std|mio|smol`), the tool's block I/O
//! ([`tool`]: READ/WRITE loops, the recovery policy) and the benchmark
//! engine ([`mod@bench`]). `cargo test` also compiles the embedding examples
//! of the workspace README as doc tests.
//!
//! # Example
//!
//! The tool's block I/O against the embedded target, on a free loopback
//! port, with the `std` driver (`DriverKind::Mio`, `Smol` and `Tokio`
//! run the same calls on the other drivers):
//!
//! ```
//! use bytes::Bytes;
//! use iscsi_cli::driver::{DriverKind, Session};
//! use iscsi_cli::tool;
//! use iscsi_mio::server::{LunSpec, Server, TargetConfig};
//! use iscsi_proto::initiator::SessionConfig;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let name = "iqn.2026-01.example:disk";
//! let target = TargetConfig::new("127.0.0.1:0".parse()?, name)
//!     .with_luns(vec![LunSpec::Ram(1 << 20)])
//!     .with_block_size(4096)
//!     .with_log(false);
//! let mut server = Server::bind(target)?;
//! let portal = server.local_addr().to_string();
//! let stop = server.shutdown_handle();
//! let serving = std::thread::spawn(move || server.run());
//!
//! let config = SessionConfig::new("iqn.2026-01.example:host")
//!     .with_target(name)
//!     .with_operational(tool::tuned_params());
//! let mut s = Session::connect(DriverKind::Std, &portal, config, Default::default())?;
//! let cap = tool::read_capacity(&mut s, 0)?;
//! assert_eq!((cap.block_len, cap.last_lba), (4096, 255));
//! tool::write_blocks(&mut s, 0, 8, &Bytes::from(vec![0x5a; 8192]))?;
//! let mut back = Vec::new();
//! tool::read_blocks(&mut s, 0, 8, 2, &mut back)?;
//! assert_eq!(back, vec![0x5a; 8192]);
//! s.logout()?;
//!
//! stop.shutdown();
//! serving.join().map_err(|_| "target thread")??;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
#![warn(missing_docs)]

pub mod bench;
pub mod driver;
pub mod plot;
pub mod tool;

/// The workspace README: its Rust code blocks (the std, mio and smol
/// embedding examples) are compiled as doc tests. Only built for doctests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
