//! Serves a 64 MiB RAM disk as LUN 0 of one iSCSI target.
//!
//! ```text
//! cargo run -p iscsi-mio --example serve -- [ADDR] [TARGET-IQN]
//! ```
//!
//! ADDR defaults to `127.0.0.1:3260`, the target name to
//! `iqn.2026-01.rs.iscsi:ram`. The bound address is printed on stdout
//! (useful with port 0). Runs until killed; one line per login goes to
//! stderr.

use iscsi_mio::server::{LunSpec, Server, TargetConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3260".into());
    let name = args
        .next()
        .unwrap_or_else(|| "iqn.2026-01.rs.iscsi:ram".into());
    let mut cfg = TargetConfig::new(addr.parse()?, name.clone());
    cfg.luns.push(LunSpec::Ram(64 << 20));
    let mut server = Server::bind(cfg)?;
    println!("serving {name} on {}", server.local_addr());
    server.run()?;
    Ok(())
}
