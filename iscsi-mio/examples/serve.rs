//! Serves a 64 MiB RAM disk as LUN 0 of one iSCSI target.
//!
//! ```text
//! cargo run -p iscsi-mio --example serve -- [ADDR] [TARGET-IQN] [--digests]
//! ```
//!
//! ADDR defaults to `127.0.0.1:3260`, the target name to
//! `iqn.2026-01.rs.iscsi:ram`. The bound address is printed on stdout
//! (useful with port 0). Stops on end of standard input (Ctrl-D), so a
//! script can stop it by closing the pipe.

use std::io::Read;

use iscsi_mio::server::{LunSpec, Server, ServerConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3260".into());
    let name = args
        .next()
        .unwrap_or_else(|| "iqn.2026-01.rs.iscsi:ram".into());
    let mut cfg = ServerConfig::new(addr.parse()?, name.clone());
    cfg.luns.push(LunSpec::Ram(64 << 20));
    let mut server = Server::bind(cfg)?;
    println!("serving {name} on {}", server.local_addr());
    let stop = server.shutdown_handle();
    std::thread::spawn(move || {
        // Drain stdin; end of input asks the server to stop.
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        stop.shutdown();
    });
    server.run()?;
    Ok(())
}
