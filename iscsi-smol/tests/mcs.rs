//! The smol driver with several connections per session (MC/S): the shared
//! scenario in `mcs_common/mod.rs`.

#[path = "mcs_common/mod.rs"]
mod mcs_common;

use iscsi_smol as driver;

type Running = smol::Task<()>;

fn spawn_driver(d: iscsi_smol::Driver) -> Running {
    smol::spawn(async move {
        let _ = d.run().await;
    })
}

async fn join_driver(r: Running) {
    r.await
}

#[test]
fn two_connections_at_erl2_spread_and_complete() {
    smol::block_on(mcs_common::run(2));
}

#[test]
fn four_connections_at_erl2_spread_and_complete() {
    smol::block_on(mcs_common::run(4));
}
