//! Discover, log in, write 2 MiB of random data at a random LBA with 32
//! commands in flight, read it back (32 in flight), compare, log out.
//!
//! ```text
//! cargo run -p iscsi-smol --example smol_client -- PORTAL TARGET [LUN] [DUMP_FILE]
//! ```
//! With DUMP_FILE the random data is also saved there (to compare with a
//! target's backing file); the LBA is printed.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use iscsi_proto::initiator::{ScsiCommand, SessionConfig, TaskOutcome};
use iscsi_proto::scsi::cdb::{
    read16, read_capacity10, test_unit_ready, write16, Capacity, RwFlags,
};
use iscsi_proto::scsi::Lun;
use iscsi_smol::{Client, DriverFuture};

const TOTAL: usize = 2 << 20;
const DEPTH: usize = 32;
const INITIATOR: &str = "iqn.2026-11.example:iscsi-smol";

fn spawn(d: DriverFuture) {
    smol::spawn(d).detach();
}

/// xorshift64*, seeded from the clock: example-grade randomness.
fn rng() -> impl FnMut() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut s = t ^ u64::from(std::process::id()) << 32 | 1;
    move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn check(outcome: TaskOutcome, what: &str) -> Result<(), Box<dyn std::error::Error>> {
    match outcome {
        TaskOutcome::Scsi(r) if r.is_good() => Ok(()),
        other => Err(format!("{what} failed: {other:?}").into()),
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(portal), Some(target)) = (args.first(), args.get(1)) else {
        return Err("usage: smol_client PORTAL TARGET [LUN] [DUMP_FILE]".into());
    };
    let lun_n: u16 = args.get(2).map_or(Ok(1), |s| s.parse())?;
    let lun = Lun::from_number(lun_n);

    let found = Client::discover(portal, SessionConfig::new(INITIATOR), spawn).await?;
    for t in &found {
        println!("discovered {} at {:?}", t.name, t.addresses);
    }
    if !found.iter().any(|t| &t.name == target) {
        println!("warning: {target} was not discovered");
    }

    let cfg = SessionConfig::new(INITIATOR).with_target(target.clone());
    let client = Client::connect(portal, cfg, spawn).await?;
    // The first command after login may meet a UNIT ATTENTION.
    for _ in 0..4 {
        let tur = ScsiCommand::new(lun, test_unit_ready().to_vec());
        if client.execute(tur).await?.result.is_good() {
            break;
        }
    }
    let cap = client
        .execute(ScsiCommand::read(lun, read_capacity10().to_vec(), 8))
        .await?;
    let cap = Capacity::parse10(&cap.data)?;
    let block = cap.block_len as usize;
    let blocks = cap.num_blocks().ok_or("capacity")?;
    let span = (TOTAL / block) as u64;
    if blocks < span {
        return Err("the LUN is smaller than 2 MiB".into());
    }
    let mut rand = rng();
    let lba = rand() % (blocks - span + 1);
    let data: Bytes = (0..TOTAL / 8)
        .flat_map(|_| rand().to_le_bytes())
        .collect::<Vec<u8>>()
        .into();
    if let Some(path) = args.get(3) {
        std::fs::write(path, &data)?;
    }

    // 32 writes in flight, each a slice of `data` (no copy).
    let chunk = TOTAL / DEPTH;
    let cb = (chunk / block) as u32;
    let mut writes = Vec::new();
    for i in 0..DEPTH {
        let cdb = write16(lba + u64::from(cb) * i as u64, cb, RwFlags::default());
        let part = data.slice(i * chunk..(i + 1) * chunk);
        writes.push(
            client
                .submit(ScsiCommand::write(lun, cdb.to_vec(), part))
                .await?,
        );
    }
    for w in writes {
        check(w.wait().await?.0, "write")?;
    }
    // 32 reads in flight.
    let mut reads = Vec::new();
    for i in 0..DEPTH {
        let cdb = read16(lba + u64::from(cb) * i as u64, cb, RwFlags::default());
        reads.push(
            client
                .submit(ScsiCommand::read(lun, cdb.to_vec(), chunk as u32))
                .await?,
        );
    }
    let mut back = Vec::with_capacity(TOTAL);
    for r in reads {
        let (outcome, bytes) = r.wait().await?;
        check(outcome, "read")?;
        back.extend_from_slice(&bytes);
    }
    if back[..] != data[..] {
        return Err("read-back data differs from what was written".into());
    }
    client.logout().await?;
    println!("ok: wrote, read back and compared {TOTAL} bytes at lba {lba} (block {block}) with {DEPTH} in flight");
    Ok(())
}

fn main() {
    if let Err(e) = smol::block_on(run()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
