//! CHAP (RFC 7143 section 12.1.3): known answers per algorithm, mutual
//! CHAP between the two sides, reflection, challenge bounds.

use iscsi_proto::login::chap::{
    constant_time_eq, ChapAlgorithm, ChapCredentials, ChapError, ChapSecret, InitiatorChap,
    InitiatorChapConfig, TargetChap, TargetChapConfig,
};
use iscsi_proto::wire::text::{encode_base64, encode_hex};

fn p(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

fn get<'a>(pairs: &'a [(String, String)], k: &str) -> &'a str {
    pairs
        .iter()
        .find(|(kk, _)| kk == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("missing {k}"))
}

const CHALLENGE: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

/// Expected responses for id 0x42, secret "secretsecret", challenge 00..0f,
/// computed independently with Python's hashlib over 42 || secret || challenge.
fn known_answer(alg: ChapAlgorithm, expected: &str) {
    let mut cfg = InitiatorChapConfig::new(ChapCredentials::new("iqn.init", "secretsecret"));
    cfg.algorithms = vec![alg];
    let mut ini = InitiatorChap::new(cfg).unwrap();
    let offer = ini.offer();
    assert!(get(&offer, "CHAP_A").starts_with(&alg.code().to_string()));
    let out = ini
        .respond(
            &[
                p("CHAP_A", &alg.code().to_string()),
                p("CHAP_I", "66"),
                p("CHAP_C", &encode_hex(&CHALLENGE)),
            ],
            None,
        )
        .unwrap();
    assert_eq!(get(&out, "CHAP_N"), "iqn.init");
    assert_eq!(get(&out, "CHAP_R"), format!("0x{expected}"));
    assert!(ini.is_complete());
    // Second path: the algorithm directly.
    let direct = alg.response(0x42, &ChapSecret::new("secretsecret"), &CHALLENGE);
    assert_eq!(encode_hex(&direct), format!("0x{expected}"));
    assert_eq!(direct.len(), alg.digest_len());
}

#[test]
fn chap_md5_known_answer() {
    known_answer(ChapAlgorithm::Md5, "e929e5859d1aa7237e68ee929075bf41");
}

#[test]
fn chap_sha1_known_answer() {
    known_answer(
        ChapAlgorithm::Sha1,
        "d9f6d747473d2ded83c49889d19c685c429255d9",
    );
}

#[test]
fn chap_sha256_known_answer() {
    known_answer(
        ChapAlgorithm::Sha256,
        "d438882585eeef1ecd16a9f0b95e1bdd1ab5cfd38484bbca1a3107b1c81332b9",
    );
}

#[test]
fn chap_sha3_256_known_answer() {
    known_answer(
        ChapAlgorithm::Sha3_256,
        "9dd5aa6c78d85ed045ae5535a2a3fa04c75d307e96df2d0a8e2045066768a48a",
    );
}

#[test]
fn chap_base64_challenge_and_hex_identifier_accepted() {
    let mut ini = InitiatorChap::new(InitiatorChapConfig::new(ChapCredentials::new(
        "n",
        "secretsecret",
    )))
    .unwrap();
    ini.offer();
    let out = ini
        .respond(
            &[
                p("CHAP_A", "5"),
                p("CHAP_I", "0x42"),
                p("CHAP_C", "0bAAECAwQFBgcICQoLDA0ODw=="),
            ],
            None,
        )
        .unwrap();
    assert_eq!(get(&out, "CHAP_R"), "0xe929e5859d1aa7237e68ee929075bf41");
}

#[test]
fn chap_md5_always_offered_and_preference_order_kept() {
    let mut cfg = InitiatorChapConfig::new(ChapCredentials::new("n", "s"));
    cfg.algorithms = vec![ChapAlgorithm::Sha256, ChapAlgorithm::Sha1];
    let mut ini = InitiatorChap::new(cfg).unwrap();
    assert_eq!(ini.offer(), vec![p("CHAP_A", "7,6,5")]);
}

#[test]
fn chap_target_picks_first_initiator_preference_it_supports() {
    let mut cfg = TargetChapConfig::new(ChapCredentials::new("n", "s"));
    cfg.algorithms = vec![ChapAlgorithm::Md5, ChapAlgorithm::Sha1];
    let mut tgt = TargetChap::new(cfg).unwrap();
    let out = tgt
        .challenge(&[p("CHAP_A", "99,7,6,5")], 1, &[9; 16])
        .unwrap();
    assert_eq!(get(&out, "CHAP_A"), "6");

    let mut tgt = TargetChap::new(TargetChapConfig::new(ChapCredentials::new("n", "s"))).unwrap();
    assert_eq!(
        tgt.challenge(&[p("CHAP_A", "7,8")], 1, &[9; 16]),
        Err(ChapError::NoCommonAlgorithm)
    );
}

#[test]
fn chap_initiator_refuses_unoffered_algorithm_and_reject() {
    let mut ini =
        InitiatorChap::new(InitiatorChapConfig::new(ChapCredentials::new("n", "s"))).unwrap();
    ini.offer();
    let err = ini
        .respond(
            &[p("CHAP_A", "7"), p("CHAP_I", "1"), p("CHAP_C", "0x01")],
            None,
        )
        .unwrap_err();
    assert_eq!(err, ChapError::AlgorithmNotOffered(7));
    let mut ini =
        InitiatorChap::new(InitiatorChapConfig::new(ChapCredentials::new("n", "s"))).unwrap();
    ini.offer();
    assert_eq!(
        ini.respond(&[p("CHAP_A", "Reject")], None),
        Err(ChapError::NoCommonAlgorithm)
    );
}

fn mutual_pair(alg: ChapAlgorithm) -> (InitiatorChap, TargetChap) {
    let ini_creds = ChapCredentials::new("iqn.init", "initiatorsecret1");
    let tgt_creds = ChapCredentials::new("iqn.target", "targetsecret1");
    let mut icfg = InitiatorChapConfig::new(ini_creds.clone());
    icfg.algorithms = vec![alg];
    icfg.mutual = Some(tgt_creds.clone());
    let mut tcfg = TargetChapConfig::new(ini_creds);
    tcfg.algorithms = vec![
        ChapAlgorithm::Md5,
        ChapAlgorithm::Sha1,
        ChapAlgorithm::Sha256,
        ChapAlgorithm::Sha3_256,
    ];
    tcfg.mutual = Some(tgt_creds);
    (
        InitiatorChap::new(icfg).unwrap(),
        TargetChap::new(tcfg).unwrap(),
    )
}

#[test]
fn chap_mutual_both_sides_against_each_other_every_algorithm() {
    for alg in [
        ChapAlgorithm::Md5,
        ChapAlgorithm::Sha1,
        ChapAlgorithm::Sha256,
        ChapAlgorithm::Sha3_256,
    ] {
        let (mut ini, mut tgt) = mutual_pair(alg);
        let step1 = ini.offer();
        let step2 = tgt.challenge(&step1, 0x10, &[0x55; 32]).unwrap();
        assert_eq!(get(&step2, "CHAP_A"), alg.code().to_string());
        let step3 = ini.respond(&step2, Some((7, &[0xaa; 20]))).unwrap();
        assert_eq!(get(&step3, "CHAP_I"), "7");
        assert!(!ini.is_complete());
        let step4 = tgt.verify(&step3).unwrap();
        assert!(tgt.is_complete());
        assert_eq!(get(&step4, "CHAP_N"), "iqn.target");
        ini.verify_target(&step4).unwrap();
        assert!(ini.is_complete());
    }
}

#[test]
fn chap_mutual_md5_target_response_known_answer() {
    let (mut ini, mut tgt) = mutual_pair(ChapAlgorithm::Md5);
    let step2 = tgt.challenge(&ini.offer(), 1, &[1; 16]).unwrap();
    let step3 = ini.respond(&step2, Some((7, &[0xaa; 20]))).unwrap();
    let step4 = tgt.verify(&step3).unwrap();
    // hashlib.md5(bytes([7]) + b"targetsecret1" + b"\xaa" * 20)
    assert_eq!(get(&step4, "CHAP_R"), "0x6a59845ad0ebdd60d9fe9c761ecb3fd5");
}

#[test]
fn chap_wrong_secret_fails_on_both_sides() {
    let (mut ini, _) = mutual_pair(ChapAlgorithm::Md5);
    let mut tcfg = TargetChapConfig::new(ChapCredentials::new("iqn.init", "othersecret"));
    tcfg.mutual = Some(ChapCredentials::new("iqn.target", "targetsecret1"));
    let mut tgt = TargetChap::new(tcfg).unwrap();
    let step2 = tgt.challenge(&ini.offer(), 1, &[3; 16]).unwrap();
    let step3 = ini.respond(&step2, Some((2, &[4; 16]))).unwrap();
    assert_eq!(tgt.verify(&step3), Err(ChapError::AuthenticationFailed));

    // Initiator side: a forged target response.
    let (mut ini, mut tgt) = mutual_pair(ChapAlgorithm::Md5);
    let step2 = tgt.challenge(&ini.offer(), 1, &[3; 16]).unwrap();
    ini.respond(&step2, Some((2, &[4; 16]))).unwrap();
    let forged = vec![
        p("CHAP_N", "iqn.target"),
        p("CHAP_R", &encode_hex(&[0u8; 16])),
    ];
    assert_eq!(
        ini.verify_target(&forged),
        Err(ChapError::AuthenticationFailed)
    );
    // Wrong name.
    let (mut ini, mut tgt) = mutual_pair(ChapAlgorithm::Md5);
    let step2 = tgt.challenge(&ini.offer(), 1, &[3; 16]).unwrap();
    let step3 = ini.respond(&step2, Some((2, &[4; 16]))).unwrap();
    let mut step4 = tgt.verify(&step3).unwrap();
    step4[0].1 = "iqn.impostor".to_owned();
    assert_eq!(ini.verify_target(&step4), Err(ChapError::WrongName));
}

#[test]
fn chap_reflected_challenge_refused_by_initiator_and_target() {
    // Initiator: our mutual challenge equal to the target's is refused.
    let (mut ini, mut tgt) = mutual_pair(ChapAlgorithm::Md5);
    let step2 = tgt.challenge(&ini.offer(), 1, &[7; 16]).unwrap();
    assert_eq!(
        ini.respond(&step2, Some((1, &[7; 16]))),
        Err(ChapError::ReflectedChallenge)
    );
    // Target: an initiator that sends back the target's challenge.
    let (mut ini, mut tgt) = mutual_pair(ChapAlgorithm::Md5);
    let step2 = tgt.challenge(&ini.offer(), 1, &[7; 16]).unwrap();
    let mut step3 = ini.respond(&step2, Some((1, &[8; 16]))).unwrap();
    for (k, v) in &mut step3 {
        if k == "CHAP_C" {
            *v = encode_base64(&[7; 16]);
        }
    }
    assert_eq!(tgt.verify(&step3), Err(ChapError::ReflectedChallenge));
}

#[test]
fn chap_same_secret_both_directions_refused_in_config() {
    let creds = ChapCredentials::new("iqn.same", "samesecret12");
    let mut icfg = InitiatorChapConfig::new(creds.clone());
    icfg.mutual = Some(ChapCredentials::new("iqn.other", "samesecret12"));
    assert!(matches!(
        InitiatorChap::new(icfg),
        Err(ChapError::SameSecretBothDirections)
    ));
    let mut tcfg = TargetChapConfig::new(creds);
    tcfg.mutual = Some(ChapCredentials::new("iqn.t", "samesecret12"));
    assert!(matches!(
        TargetChap::new(tcfg),
        Err(ChapError::SameSecretBothDirections)
    ));
    assert!(ChapSecret::new("samesecret12").is_at_least_96_bits());
    assert!(!ChapSecret::new("short").is_at_least_96_bits());
}

#[test]
fn chap_reflected_response_refused() {
    // A rogue target obtains our own response to our challenge (e.g. by
    // reflecting it to us on a second connection) and replays it: the
    // response equals what we would generate, so it is refused (RFC 7143
    // section 9.2.1).
    let (mut ini, mut tgt) = mutual_pair(ChapAlgorithm::Md5);
    let step2 = tgt.challenge(&ini.offer(), 1, &[1; 16]).unwrap();
    ini.respond(&step2, Some((9, &[2; 16]))).unwrap();
    let r = ChapAlgorithm::Md5.response(9, &ChapSecret::new("initiatorsecret1"), &[2; 16]);
    let step4 = vec![p("CHAP_N", "iqn.target"), p("CHAP_R", &encode_hex(&r))];
    assert_eq!(ini.verify_target(&step4), Err(ChapError::ReflectedResponse));

    // Target side: the initiator replays the target's own mutual response.
    let (mut ini, mut tgt) = mutual_pair(ChapAlgorithm::Md5);
    let step2 = tgt.challenge(&ini.offer(), 4, &[5; 16]).unwrap();
    let mut step3 = ini.respond(&step2, Some((9, &[2; 16]))).unwrap();
    let r = ChapAlgorithm::Md5.response(4, &ChapSecret::new("targetsecret1"), &[5; 16]);
    for (k, v) in &mut step3 {
        if k == "CHAP_R" {
            *v = encode_hex(&r);
        }
    }
    assert_eq!(tgt.verify(&step3), Err(ChapError::ReflectedResponse));
}

#[test]
fn chap_1024_byte_challenge_accepted_1025_refused() {
    let run = |len: usize, b64: bool| {
        let mut ini =
            InitiatorChap::new(InitiatorChapConfig::new(ChapCredentials::new("n", "s"))).unwrap();
        ini.offer();
        let c = vec![0x5a; len];
        let enc = if b64 {
            encode_base64(&c)
        } else {
            encode_hex(&c)
        };
        ini.respond(
            &[p("CHAP_A", "5"), p("CHAP_I", "1"), p("CHAP_C", &enc)],
            None,
        )
    };
    assert!(run(1024, false).is_ok());
    assert!(run(1024, true).is_ok());
    assert_eq!(run(1025, false), Err(ChapError::TooLong { len: 1025 }));
    assert_eq!(run(1025, true), Err(ChapError::TooLong { len: 1025 }));
    // Target side refuses to issue an over-long challenge, too.
    let mut tgt = TargetChap::new(TargetChapConfig::new(ChapCredentials::new("n", "s"))).unwrap();
    assert_eq!(
        tgt.challenge(&[p("CHAP_A", "5")], 1, &[0; 1025]),
        Err(ChapError::TooLong { len: 1025 })
    );
}

#[test]
fn chap_short_challenge_and_bad_identifier_refused() {
    let mut cfg = InitiatorChapConfig::new(ChapCredentials::new("n", "s"));
    cfg.min_challenge_len = 16;
    let mut ini = InitiatorChap::new(cfg).unwrap();
    ini.offer();
    assert_eq!(
        ini.respond(
            &[p("CHAP_A", "5"), p("CHAP_I", "1"), p("CHAP_C", "0x0102")],
            None
        ),
        Err(ChapError::ChallengeTooShort { len: 2, min: 16 })
    );
    let mut ini =
        InitiatorChap::new(InitiatorChapConfig::new(ChapCredentials::new("n", "s"))).unwrap();
    ini.offer();
    assert_eq!(
        ini.respond(
            &[p("CHAP_A", "5"), p("CHAP_I", "256"), p("CHAP_C", "0x01")],
            None
        ),
        Err(ChapError::BadIdentifier(256))
    );
    let mut ini =
        InitiatorChap::new(InitiatorChapConfig::new(ChapCredentials::new("n", "s"))).unwrap();
    ini.offer();
    assert_eq!(
        ini.respond(&[p("CHAP_A", "5"), p("CHAP_C", "0x01")], None),
        Err(ChapError::MissingKey("CHAP_I"))
    );
}

#[test]
fn chap_mutual_requires_caller_challenge_and_target_config() {
    let (mut ini, mut tgt) = mutual_pair(ChapAlgorithm::Md5);
    let step2 = tgt.challenge(&ini.offer(), 1, &[3; 16]).unwrap();
    assert_eq!(
        ini.respond(&step2, None),
        Err(ChapError::MutualChallengeMissing)
    );

    // A target without mutual credentials refuses a mutual challenge.
    let mut tgt = TargetChap::new(TargetChapConfig::new(ChapCredentials::new(
        "iqn.init",
        "initiatorsecret1",
    )))
    .unwrap();
    let (mut ini, _) = mutual_pair(ChapAlgorithm::Md5);
    let step2 = tgt.challenge(&ini.offer(), 1, &[3; 16]).unwrap();
    let step3 = ini.respond(&step2, Some((2, &[4; 16]))).unwrap();
    assert_eq!(tgt.verify(&step3), Err(ChapError::MutualNotConfigured));
}

#[test]
fn chap_secrets_never_in_debug_output() {
    let creds = ChapCredentials::new("iqn.name", "TopSecretValue");
    let mut cfg = InitiatorChapConfig::new(creds.clone());
    cfg.mutual = Some(ChapCredentials::new("t", "OtherHiddenValue"));
    let ini = InitiatorChap::new(cfg.clone()).unwrap();
    for s in [format!("{creds:?}"), format!("{cfg:?}"), format!("{ini:?}")] {
        assert!(!s.contains("TopSecretValue"), "{s}");
        assert!(!s.contains("OtherHiddenValue"), "{s}");
        assert!(!s.contains("84, 111, 112"), "{s}"); // "Top" as bytes
    }
    assert!(format!("{creds:?}").contains("iqn.name"));
}

#[test]
fn chap_empty_secret_and_out_of_order_refused() {
    assert!(matches!(
        InitiatorChap::new(InitiatorChapConfig::new(ChapCredentials::new("n", ""))),
        Err(ChapError::EmptySecret)
    ));
    let mut ini =
        InitiatorChap::new(InitiatorChapConfig::new(ChapCredentials::new("n", "s"))).unwrap();
    assert_eq!(ini.respond(&[], None), Err(ChapError::OutOfOrder));
    let mut tgt = TargetChap::new(TargetChapConfig::new(ChapCredentials::new("n", "s"))).unwrap();
    assert_eq!(tgt.verify(&[]), Err(ChapError::OutOfOrder));
}

#[test]
fn constant_time_eq_basics() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
    assert!(constant_time_eq(b"", b""));
}
