//! The mio target server driven by a scripted initiator over loopback:
//! login, SCSI I/O, discovery, several sessions at once, back-pressure,
//! shutdown.

mod server_support;

use iscsi_mio::server::{LunSpec, Server, TargetConfig, TargetError};
use iscsi_proto::scsi::cdb;
use iscsi_proto::scsi::{Capacity, ReportLuns, SenseData, SenseKey};
use iscsi_proto::wire::text::parse_pairs;
use iscsi_proto::wire::{Header, Residual, TextRequest};
use server_support::*;

const MIB: u64 = 1 << 20;

#[test]
fn login_read_capacity_write_read_logout() {
    let srv = start(config(vec![LunSpec::Ram(4 * MIB)]));
    let mut c = Client::connect(srv.addr, 1);
    let keys = c.login();
    // The server offers its 256 KiB receive segments.
    assert_eq!(get(&keys, "MaxRecvDataSegmentLength"), Some("262144"));

    let o = c.scsi(0, &cdb::read_capacity10(), 8, &[]);
    assert_eq!(o.status, 0);
    let cap = Capacity::parse10(&o.data).unwrap();
    assert_eq!(cap.block_len, 512);
    assert_eq!(cap.last_lba, 4 * MIB / 512 - 1);

    let data = pattern(8 * 512, 3);
    c.write10(100, &data);
    assert_eq!(c.read10(100, 8), data);
    // Neighbouring blocks untouched (RAM disks start zeroed).
    assert_eq!(c.read10(99, 1), vec![0u8; 512]);
    assert_eq!(c.read10(108, 1), vec![0u8; 512]);

    c.logout();
    srv.stop().unwrap();
}

#[test]
fn writes_larger_than_one_r2t_segment() {
    // 1 MiB write: several Data-Out PDUs (the target's 256 KiB
    // MaxRecvDataSegmentLength) and, with the 1 MiB MaxBurstLength the
    // client accepts by default (262144), several R2Ts.
    let srv = start(config(vec![LunSpec::Ram(8 * MIB)]));
    let mut c = Client::connect(srv.addr, 1);
    c.login();
    let data = pattern(MIB as usize, 9);
    c.write10(2048, &data);
    let back = c.read10(2048, (MIB / 512) as u16);
    assert!(back == data, "1 MiB read back differs");
    c.logout();
}

#[test]
fn write_residuals_are_reported() {
    // RFC 7143 section 11.4.5.1: EDTL above the CDB's transfer length is
    // an underflow, below it an overflow (only EDTL bytes are written).
    let srv = start(config(vec![LunSpec::Ram(MIB)]));
    let mut c = Client::connect(srv.addr, 1);
    c.login();
    c.write10(0, &vec![b'a'; 1024]);
    // One block in the CDB, two blocks of data.
    let o = c.scsi(0, &cdb::write10(0, 1, Default::default()), 0, &[b'b'; 1024]);
    assert_eq!(o.status, 0);
    assert_eq!(o.residual, Residual::Underflow(512));
    let back = c.read10(0, 2);
    assert!(back[..512].iter().all(|&b| b == b'b'));
    assert!(back[512..].iter().all(|&b| b == b'a'));
    // Two blocks in the CDB, one block of data.
    let o = c.scsi(0, &cdb::write10(0, 2, Default::default()), 0, &[b'c'; 512]);
    assert_eq!(o.status, 0);
    assert_eq!(o.residual, Residual::Overflow(512));
    let back = c.read10(0, 2);
    assert!(back[..512].iter().all(|&b| b == b'c'));
    assert!(back[512..].iter().all(|&b| b == b'a'));
}

#[test]
fn luns_are_served_and_unknown_luns_rejected() {
    let srv = start(config(vec![LunSpec::Ram(MIB), LunSpec::Ram(2 * MIB)]));
    let mut c = Client::connect(srv.addr, 1);
    c.login();
    let o = c.scsi(0, &cdb::report_luns(0, 4096), 4096, &[]);
    assert_eq!(o.status, 0);
    let luns = ReportLuns::parse(&o.data).unwrap();
    let numbers: Vec<_> = luns.luns.iter().map(|l| l.number()).collect();
    assert_eq!(numbers, vec![Some(0), Some(1)]);

    // LUN 1 (wire form 0x0001...) is the 2 MiB disk.
    let lun1 = iscsi_proto::scsi::Lun::from_number(1).to_u64();
    let o = c.scsi(lun1, &cdb::read_capacity10(), 8, &[]);
    assert_eq!(o.status, 0);
    assert_eq!(
        Capacity::parse10(&o.data).unwrap().last_lba,
        2 * MIB / 512 - 1
    );

    // LUN 5 does not exist: CHECK CONDITION, LOGICAL UNIT NOT SUPPORTED.
    let lun5 = iscsi_proto::scsi::Lun::from_number(5).to_u64();
    let o = c.scsi(lun5, &cdb::read_capacity10(), 8, &[]);
    assert_eq!(o.status, 0x02);
    let sense = SenseData::parse_iscsi_segment(&o.sense).unwrap().unwrap();
    assert!(
        sense.is(SenseKey::IllegalRequest, (0x25, 0x00)),
        "{sense:?}"
    );

    // Writes to LUN 1 do not show on LUN 0.
    let data = pattern(512, 5);
    let o = c.scsi(lun1, &cdb::write10(7, 1, Default::default()), 0, &data);
    assert_eq!(o.status, 0);
    let o = c.scsi(lun1, &cdb::read10(7, 1, Default::default()), 512, &[]);
    assert_eq!(o.data, data);
    assert_eq!(c.read10(7, 1), vec![0u8; 512]);
}

#[test]
fn discovery_reports_the_bound_portal() {
    let srv = start(config(vec![LunSpec::Ram(MIB)]));
    let mut c = Client::connect(srv.addr, 1);
    let (h, _) = c.login_with("Discovery", &[]);
    assert_eq!((h.status_class, h.status_detail), (0, 0));
    let req = TextRequest {
        immediate: true,
        final_pdu: true,
        cont: false,
        lun: 0,
        itt: 77,
        ttt: 0xffff_ffff,
        cmd_sn: c.cmd_sn,
        exp_stat_sn: c.exp_stat_sn,
    };
    c.send(req, kv(&[("SendTargets", "All")]));
    let p = c.recv();
    let Header::TextResponse(r) = p.header else {
        panic!("expected a text response, got {:?}", p.header)
    };
    assert_eq!(r.itt, 77);
    let pairs = parse_pairs(&p.data).unwrap();
    assert_eq!(get(&pairs, "TargetName"), Some(TARGET));
    let addr = format!("{},1", srv.addr);
    assert_eq!(get(&pairs, "TargetAddress"), Some(addr.as_str()));
}

#[test]
fn login_to_an_unknown_target_fails() {
    let srv = start(config(vec![LunSpec::Ram(MIB)]));
    let mut c = Client::connect(srv.addr, 1);
    let (h, _) = c.login_with("Normal", &[("TargetName", "iqn.2026-01.test.mio:nope")]);
    // Target not found (RFC 7143 section 11.13.5, 0x0203); the target
    // then closes the connection.
    assert_ne!(h.status_class, 0);
    assert!(c.try_recv().is_none());
    // The server keeps serving.
    let mut c = Client::connect(srv.addr, 2);
    c.login();
    c.logout();
}

#[test]
fn concurrent_sessions_share_the_logical_unit() {
    let srv = start(config(vec![LunSpec::Ram(4 * MIB)]));
    let addr = srv.addr;
    let n = 6u16;
    let threads: Vec<_> = (0..n)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr, 100 + i);
                c.login();
                let lba = u32::from(i) * 64;
                for round in 0..8u8 {
                    let data = pattern(16 * 512, round.wrapping_mul(17) ^ i as u8);
                    c.write10(lba, &data);
                    assert_eq!(c.read10(lba, 16), data, "session {i} round {round}");
                }
                c.logout();
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    // A further session sees every session's last write.
    let mut c = Client::connect(addr, 1);
    c.login();
    for i in 0..n {
        let expect = pattern(16 * 512, 7u8.wrapping_mul(17) ^ i as u8);
        assert_eq!(c.read10(u32::from(i) * 64, 16), expect, "session {i}");
    }
    c.logout();
    srv.stop().unwrap();
}

#[test]
fn pipelined_reads_survive_a_full_socket() {
    // Many 1 MiB reads are sent before any answer is read: the server's
    // socket buffer fills, its writes would block, and the rest must go
    // out later in order and intact.
    let srv = start(config(vec![LunSpec::Ram(16 * MIB)]));
    let mut c = Client::connect(srv.addr, 1);
    c.login();
    let disk = pattern(16 * MIB as usize, 11);
    for (i, chunk) in disk.chunks(MIB as usize).enumerate() {
        c.write10((i as u32) * 2048, chunk);
    }
    let itts: Vec<u32> = (0..16u32)
        .map(|i| c.send_read(&cdb::read10(i * 2048, 2048, Default::default()), MIB as u32))
        .collect();
    for (i, itt) in itts.into_iter().enumerate() {
        let o = c.finish(itt, 0, &[]);
        assert_eq!(o.status, 0);
        assert!(
            o.data == disk[i * MIB as usize..(i + 1) * MIB as usize],
            "read {i} differs"
        );
    }
    c.logout();
}

#[test]
fn shutdown_closes_connections_and_returns() {
    let srv = start(config(vec![LunSpec::Ram(MIB)]));
    let mut idle = Client::connect(srv.addr, 1);
    idle.login();
    let mut other = Client::connect(srv.addr, 2);
    other.login();
    srv.stop().unwrap();
    // Both connections are closed by the server.
    assert!(idle.try_recv().is_none());
    assert!(other.try_recv().is_none());
}

#[test]
fn session_reinstatement_closes_the_old_connection() {
    // RFC 7143 section 6.3.5: a new login with the ISID of a live session
    // (TSIH 0) reinstates it; the old connection is closed.
    let srv = start(config(vec![LunSpec::Ram(MIB)]));
    let mut old = Client::connect(srv.addr, 9);
    old.login();
    let mut new = Client::connect(srv.addr, 9);
    new.login();
    assert!(old.try_recv().is_none(), "old connection still open");
    assert_eq!(new.read10(0, 1), vec![0u8; 512]);
    new.logout();
}

#[test]
fn nop_in_pings_are_sent_when_idle() {
    let mut cfg = config(vec![LunSpec::Ram(MIB)]);
    cfg.nop_interval = Some(std::time::Duration::from_millis(50));
    let srv = start(cfg);
    let mut c = Client::connect(srv.addr, 1);
    c.login();
    // Idle: the target pings (RFC 7143 section 11.19, ITT 0xffffffff and
    // a valid TTT); answer it and expect the session to keep working.
    let p = c.recv();
    let Header::NopIn(n) = p.header else {
        panic!("expected a NOP-In, got {:?}", p.header)
    };
    assert_eq!(n.itt, 0xffff_ffff);
    assert_ne!(n.ttt, 0xffff_ffff);
    c.answer_ping(n.ttt);
    let o = c.scsi(0, &cdb::test_unit_ready(), 0, &[]);
    assert_eq!(o.status, 0);
}

#[test]
fn bind_rejects_bad_configurations() {
    let addr = "127.0.0.1:0".parse().unwrap();
    let cfg = TargetConfig::new(addr, TARGET);
    assert!(matches!(Server::bind(cfg), Err(TargetError::NoLuns)));

    let mut cfg = TargetConfig::new(addr, TARGET);
    cfg.luns.push(LunSpec::Ram(1000));
    assert!(matches!(
        Server::bind(cfg),
        Err(TargetError::Device { lun: 0, .. })
    ));

    let mut cfg = TargetConfig::new(addr, TARGET);
    cfg.luns.push(LunSpec::Ram(MIB));
    cfg.mutual_chap = Some(("target".into(), "secretsecret".into()));
    assert!(matches!(
        Server::bind(cfg),
        Err(TargetError::MutualWithoutChap)
    ));

    let mut cfg = TargetConfig::new(addr, TARGET);
    cfg.luns
        .push(LunSpec::File("/nonexistent/dir/disk.img".into()));
    assert!(matches!(
        Server::bind(cfg),
        Err(TargetError::Device { lun: 0, .. })
    ));
}

#[test]
fn crc32c_digests_when_the_initiator_asks() {
    let srv = start(config(vec![LunSpec::Ram(MIB)]));
    let mut c = Client::connect(srv.addr, 1);
    let (h, p) = c.login_with(
        "Normal",
        &[("HeaderDigest", "CRC32C"), ("DataDigest", "CRC32C,None")],
    );
    assert_eq!((h.status_class, h.status_detail), (0, 0), "{p:?}");
    assert_eq!(get(&p, "HeaderDigest"), Some("CRC32C"));
    assert_eq!(get(&p, "DataDigest"), Some("CRC32C"));
    assert_eq!(
        c.digests,
        iscsi_proto::wire::Digests::BOTH,
        "client did not switch digests on"
    );
    // Every PDU from here on carries digests both ways (the client's
    // decoder checks them).
    let data = pattern(4 * 512, 21);
    c.write10(3, &data);
    assert_eq!(c.read10(3, 4), data);
    c.logout();
}

#[test]
fn chap_login_accepts_the_secret_and_refuses_others() {
    let mut cfg = config(vec![LunSpec::Ram(MIB)]);
    cfg.chap = Some(("alice".into(), "twelve-bytes-plus".into()));
    let srv = start(cfg);

    let mut c = Client::connect(srv.addr, 1);
    assert_eq!(c.login_chap("alice", "twelve-bytes-plus"), (0, 0));
    assert_eq!(c.read10(0, 1), vec![0u8; 512]);
    c.logout();

    // Wrong secret: 0x0201 authentication failure, connection closed.
    let mut c = Client::connect(srv.addr, 2);
    assert_eq!(c.login_chap("alice", "not-the-secret!!"), (2, 1));
    assert!(c.try_recv().is_none());

    // No authentication offered: refused too.
    let mut c = Client::connect(srv.addr, 3);
    let (h, _) = c.login_with("Normal", &[]);
    assert_eq!(h.status_class, 2);
}

#[test]
fn config_debug_hides_chap_secrets() {
    let mut cfg = TargetConfig::new("127.0.0.1:0".parse().unwrap(), TARGET);
    cfg.chap = Some(("alice".into(), "hunter2-hunter2".into()));
    cfg.mutual_chap = Some(("tgt".into(), "swordfish-swordfish".into()));
    let s = format!("{cfg:?}");
    assert!(s.contains("alice"));
    assert!(!s.contains("hunter2"), "{s}");
    assert!(!s.contains("swordfish"), "{s}");
}
