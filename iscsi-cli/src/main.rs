//! The `iscsi` command-line tool.
use clap::Parser;

/// iSCSI initiator and target tool built on the iscsi-proto sans-IO core.
#[derive(Parser, Debug)]
#[command(name = "iscsi", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
