//! SendTargets responses (RFC 7143 section 13.3, 13.8).

use iscsi_proto::login::discovery::*;
use iscsi_proto::wire::text::parse_pairs;

#[test]
fn send_targets_esx_seed_frame_35() {
    let pairs = parse_pairs(
        b"TargetName=iqn.1992-05.com.emc:bb0050568c51390000-2\0TargetAddress=10.131.13.10:3260,1\0",
    )
    .unwrap();
    let got = parse_send_targets(&pairs).unwrap();
    assert_eq!(
        got,
        vec![DiscoveredTarget {
            name: "iqn.1992-05.com.emc:bb0050568c51390000-2".into(),
            addresses: vec![TargetAddress {
                host: "10.131.13.10".into(),
                port: Some(3260),
                portal_group_tag: Some(1)
            }],
        }]
    );
}

#[test]
fn send_targets_multiple_targets_ipv6_and_defaults() {
    let pairs = parse_pairs(
        b"TargetName=iqn.a\0TargetAddress=[fe80::1]:3261,2\0TargetAddress=host.example\0\
TargetAlias=x\0TargetName=iqn.b\0TargetAddress=[::1]\0",
    )
    .unwrap();
    let got = parse_send_targets(&pairs).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].addresses[0].host, "fe80::1");
    assert_eq!(got[0].addresses[0].port, Some(3261));
    assert_eq!(got[0].addresses[0].portal_group_tag, Some(2));
    assert_eq!(got[0].addresses[1].port, None);
    assert_eq!(got[1].addresses[0].host, "::1");
    for bad in [
        "",
        "h:99999",
        "h:1,70000",
        "[::1",
        "[::1]x",
        ":3260",
        "h:abc",
    ] {
        assert!(parse_target_address(bad).is_err(), "{bad:?}");
    }
    // An address with no target before it.
    let pairs = parse_pairs(b"TargetAddress=1.2.3.4\0").unwrap();
    assert!(parse_send_targets(&pairs).is_err());
}
