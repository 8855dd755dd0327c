//! `mio` event-loop driver for the `iscsi-proto` sans-IO core: registers a
//! session's socket with a caller's `mio::Registry`; no protocol logic.
//!
//! [`client::Client`] lives in your own `mio::Poll` (see
//! `examples/multi.rs` for several sessions and another socket in one
//! loop); [`client::Blocking`] runs a ready-made loop for one session;
//! [`server::Server`] is the embedded target's socket loop. Both on
//! loopback:
//!
//! ```
//! use bytes::Bytes;
//! use iscsi_mio::client::Blocking;
//! use iscsi_mio::server::{LunSpec, Server, TargetConfig};
//! use iscsi_proto::initiator::SessionConfig;
//! use iscsi_proto::scsi::Lun;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A target with a 1 MiB RAM disk as LUN 0, on a port the OS picks.
//! let mut cfg = TargetConfig::new("127.0.0.1:0".parse()?, "iqn.2026-01.example:disk");
//! cfg.luns.push(LunSpec::Ram(1 << 20));
//! let mut server = Server::bind(cfg)?;
//! let portal = server.local_addr().to_string();
//! let stop = server.shutdown_handle();
//! let target = std::thread::spawn(move || server.run());
//!
//! let config = SessionConfig::new("iqn.2026-01.example:host").with_target("iqn.2026-01.example:disk");
//! let mut session = Blocking::connect(&portal, config)?;
//! let cap = session.read_capacity(Lun::ZERO)?;
//! let block = cap.block_len;
//! session.write(Lun::ZERO, 8, Bytes::from(vec![0x5a; block as usize]), block)?;
//! assert_eq!(session.read(Lun::ZERO, 8, 1, block)?, vec![0x5a; block as usize]);
//! session.logout()?;
//!
//! stop.shutdown();
//! target.join().expect("target thread")?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
// Bad input never panics: no unwrap, expect, panic or indexing outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]
#![warn(missing_docs)]

pub mod client;
pub mod server;
