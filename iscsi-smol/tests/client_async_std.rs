//! The async driver under async-std's executor (the same scenarios as
//! under smol).

#[path = "support/target.rs"]
mod target;

mod common;

use iscsi_smol as driver;

use iscsi_smol::DriverFuture;

fn spawn(d: DriverFuture) {
    drop(async_std::task::spawn(d));
}

#[test]
fn basic_under_async_std() {
    async_std::task::block_on(common::basic(spawn));
}

#[test]
fn depth_32_under_async_std() {
    async_std::task::block_on(common::depth_32(spawn));
}

#[test]
fn discovery_and_refused_under_async_std() {
    async_std::task::block_on(common::discovery_and_refused(spawn, spawn));
}

#[test]
fn dropped_client_logs_out_under_async_std() {
    async_std::task::block_on(common::dropped_client_logs_out(spawn));
}

#[test]
fn large_in_flight_under_async_std() {
    async_std::task::block_on(common::large_in_flight(spawn));
}

#[test]
fn unit_attention_is_retried_once_under_async_std() {
    async_std::task::block_on(common::unit_attention_is_retried_once(spawn));
}
