//! Log in, read the capacity, write 1 MiB with 32 tasks of the runtime
//! sharing the session, read it back, compare, log out.
//!
//! ```text
//! cargo run -p iscsi-tokio --example tokio_client -- PORTAL TARGET [LUN]
//! ```
//! (`cargo run -p iscsi-mio --example serve -- 127.0.0.1:3260` serves a
//! RAM disk to try it on.) Writes at LBA 0 of the LUN.

use bytes::Bytes;
use iscsi_proto::initiator::SessionConfig;
use iscsi_tokio::{Client, Lun};

const TASKS: u64 = 32;
const PER_TASK: usize = 32 * 1024;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(portal), Some(target)) = (args.first(), args.get(1)) else {
        return Err("usage: tokio_client PORTAL TARGET [LUN]".into());
    };
    let lun = Lun::from_number(args.get(2).map_or(Ok(0), |s| s.parse())?);
    let cfg = SessionConfig::new("iqn.2026-12.example:iscsi-tokio").with_target(target.clone());
    let client = Client::connect(portal, cfg, |d| drop(tokio::spawn(d))).await?;
    // READ CAPACITY (16), or (10); the UNIT ATTENTION of a new session is
    // retried by the helpers.
    let cap = client.read_capacity(lun).await?;
    let bs = cap.block_len;
    println!("{:?} bytes in {bs}-byte blocks", cap.total_bytes());
    let blocks = (PER_TASK / bs as usize) as u64;
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move {
                let data: Bytes = (0..PER_TASK).map(|b| (b as u64 ^ i) as u8).collect();
                c.write(lun, i * blocks, data.clone(), bs).await?;
                let back = c.read(lun, i * blocks, blocks as u32, bs).await?;
                Ok::<bool, iscsi_tokio::Error>(back == data)
            })
        })
        .collect();
    for t in tasks {
        if !t.await?? {
            return Err("read-back data differs".into());
        }
    }
    client.logout().await?;
    println!(
        "ok: {} bytes written, read back and compared",
        TASKS as usize * PER_TASK
    );
    Ok(())
}
