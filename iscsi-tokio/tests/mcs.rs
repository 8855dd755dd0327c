//! The tokio driver with several connections per session (MC/S): the
//! shared scenario in `iscsi-smol/tests/mcs_common/mod.rs`.

#[path = "../../iscsi-smol/tests/mcs_common/mod.rs"]
mod mcs_common;

use iscsi_tokio as driver;

type Running = tokio::task::JoinHandle<()>;

fn spawn_driver(d: iscsi_tokio::Driver) -> Running {
    tokio::spawn(async move {
        let _ = d.run().await;
    })
}

async fn join_driver(r: Running) {
    r.await.unwrap()
}

#[tokio::test]
async fn two_connections_at_erl2_spread_and_complete() {
    mcs_common::run(2).await;
}

#[tokio::test]
async fn four_connections_at_erl2_spread_and_complete() {
    mcs_common::run(4).await;
}
