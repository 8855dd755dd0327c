//! The blocking driver's loop, from the application's side: connect, read
//! the capacity, write a block, read it back, log out.
//!
//! ```text
//! cargo run -p iscsi-mio --example serve &     # or any target
//! cargo run -p iscsi-std --example blocking -- 127.0.0.1:3260 iqn.2026-01.rs.iscsi:ram
//! ```
//!
//! Each call drives the session until its answer is in: it writes what the
//! core has to send, reads and feeds the core, fires due timers, and keeps
//! the session alive from a background thread between calls.

use bytes::Bytes;
use iscsi_proto::initiator::{ScsiCommand, SessionConfig};
use iscsi_proto::scsi::cdb::{read16, read_capacity10, write16, Capacity, RwFlags};
use iscsi_proto::scsi::Lun;
use iscsi_std::{Client, Options};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let portal = args.next().unwrap_or_else(|| "127.0.0.1:3260".into());
    let target = args
        .next()
        .unwrap_or_else(|| "iqn.2026-01.rs.iscsi:ram".into());
    let cfg = SessionConfig::new("iqn.2026-11.example:host").with_target(target);
    let mut client = Client::connect(&portal, cfg, Options::default())?;
    let lun = Lun::from_number(0);
    // A fresh session may first see a UNIT ATTENTION (tgtd sends one):
    // ask twice.
    let cap = match client.execute(ScsiCommand::read(lun, read_capacity10().to_vec(), 8)) {
        Ok(c) if c.result.is_good() => c,
        _ => client.execute(ScsiCommand::read(lun, read_capacity10().to_vec(), 8))?,
    };
    let cap = Capacity::parse10(&cap.data)?;
    println!("{} blocks of {} bytes", cap.last_lba + 1, cap.block_len);
    let block = Bytes::from(vec![0xa5; cap.block_len as usize]);
    // submit() queues without waiting: many commands can be in flight.
    let write = client.submit(ScsiCommand::write(
        lun,
        write16(0, 1, RwFlags::default()).to_vec(),
        block.clone(),
    ))?;
    client.wait(write)?;
    let cdb = read16(0, 1, RwFlags::default());
    let back = client.execute(ScsiCommand::read(lun, cdb.to_vec(), cap.block_len))?;
    println!(
        "read back {} bytes, same: {}",
        back.data.len(),
        back.data == block
    );
    client.logout()?;
    Ok(())
}
