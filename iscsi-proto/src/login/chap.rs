//! CHAP (Challenge Handshake Authentication Protocol) for iSCSI (RFC 7143
//! section 12.1.3, RFC 1994).
//!
//! The exchange, in login security-stage PDUs:
//! 1. initiator: `CHAP_A=<A1,A2,...>`
//! 2. target: `CHAP_A=<A> CHAP_I=<I> CHAP_C=<C>`
//! 3. initiator: `CHAP_N=<N> CHAP_R=<R>` (plus `CHAP_I`, `CHAP_C` for mutual CHAP)
//! 4. target (mutual only): `CHAP_N=<N> CHAP_R=<R>`
//!
//! The response is `R = H(I || secret || C)` with `I` the one-byte
//! identifier (RFC 1994 section 4.1). The core draws no randomness: the
//! caller supplies every identifier and challenge it sends.

use crate::prelude::*;
use core::fmt;

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use sha3::Sha3_256;
use thiserror::Error;

use crate::wire::text::{self, MAX_BINARY_LEN};

/// A CHAP hash algorithm, numbered as in the IANA "PPP Authentication
/// Algorithms" registry used by `CHAP_A` (RFC 7143 section 12.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChapAlgorithm {
    /// 5: CHAP with MD5, the one RFC 7143 section 12.1.3 requires.
    Md5,
    /// 6: CHAP with SHA-1.
    Sha1,
    /// 7: CHAP with SHA-256.
    Sha256,
    /// 8: CHAP with SHA3-256.
    Sha3_256,
}

impl ChapAlgorithm {
    /// The `CHAP_A` number.
    pub const fn code(self) -> u8 {
        match self {
            ChapAlgorithm::Md5 => 5,
            ChapAlgorithm::Sha1 => 6,
            ChapAlgorithm::Sha256 => 7,
            ChapAlgorithm::Sha3_256 => 8,
        }
    }

    /// The algorithm for a `CHAP_A` number, if supported.
    pub const fn from_code(code: u64) -> Option<Self> {
        match code {
            5 => Some(ChapAlgorithm::Md5),
            6 => Some(ChapAlgorithm::Sha1),
            7 => Some(ChapAlgorithm::Sha256),
            8 => Some(ChapAlgorithm::Sha3_256),
            _ => None,
        }
    }

    /// Length in bytes of a response.
    pub const fn digest_len(self) -> usize {
        match self {
            ChapAlgorithm::Md5 => 16,
            ChapAlgorithm::Sha1 => 20,
            ChapAlgorithm::Sha256 | ChapAlgorithm::Sha3_256 => 32,
        }
    }

    /// RFC 1994 section 4.1: "The Response Value is the one-way hash
    /// calculated over a stream of octets consisting of the Identifier,
    /// followed by (concatenated with) the 'secret', followed by
    /// (concatenated with) the Challenge Value."
    pub fn response(self, id: u8, secret: &ChapSecret, challenge: &[u8]) -> Vec<u8> {
        fn run<D: Digest>(id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
            let mut h = D::new();
            h.update([id]);
            h.update(secret);
            h.update(challenge);
            h.finalize().to_vec()
        }
        let s = secret.0.as_slice();
        match self {
            ChapAlgorithm::Md5 => run::<Md5>(id, s, challenge),
            ChapAlgorithm::Sha1 => run::<Sha1>(id, s, challenge),
            ChapAlgorithm::Sha256 => run::<Sha256>(id, s, challenge),
            ChapAlgorithm::Sha3_256 => run::<Sha3_256>(id, s, challenge),
        }
    }
}

/// A CHAP secret. Its `Debug` output never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct ChapSecret(Vec<u8>);

impl ChapSecret {
    /// Wraps secret bytes.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        ChapSecret(secret.into())
    }

    /// Length of the secret in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if the secret has at least 96 bits. RFC 7143 section 9.2.1: an
    /// implementation "SHOULD NOT continue with the login step in which it
    /// should send a CHAP response ... unless it can verify that the CHAP
    /// secret is at least 96 bits, or that IPsec encryption is being used";
    /// the caller, who knows about IPsec, decides.
    pub fn is_at_least_96_bits(&self) -> bool {
        self.0.len() >= 12
    }

    /// True for an empty secret (which [`InitiatorChap::new`] and
    /// [`TargetChap::new`] refuse: RFC 1994 section 2.2 "the length of the
    /// secret MUST be at least 1 octet").
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ChapSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChapSecret(<redacted>)")
    }
}

/// A CHAP name and secret. `Debug` redacts the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChapCredentials {
    /// The name sent (or expected) as `CHAP_N`.
    pub name: String,
    /// The shared secret.
    pub secret: ChapSecret,
}

impl ChapCredentials {
    /// Builds credentials from a name and secret bytes.
    pub fn new(name: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        ChapCredentials {
            name: name.into(),
            secret: ChapSecret::new(secret),
        }
    }
}

/// A CHAP failure (RFC 7143 section 12.1.3 unless stated).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ChapError {
    /// A required CHAP key is absent.
    #[error("RFC 7143 section 12.1.3: missing {0}")]
    MissingKey(&'static str),
    /// A CHAP key appears twice (RFC 7143 section 6.2: renegotiation forbidden).
    #[error("RFC 7143 section 6.2: {0} sent twice")]
    DuplicateKey(&'static str),
    /// A CHAP value is malformed.
    #[error("RFC 7143 section 12.1.3: malformed {key}: {source}")]
    Malformed {
        /// The key.
        key: &'static str,
        /// The codec error.
        source: text::TextError,
    },
    /// `CHAP_I` is not a number from 0 to 255.
    #[error("RFC 7143 section 12.1.3: CHAP_I {0} is not one octet")]
    BadIdentifier(u64),
    /// No algorithm in common (the peer answered `Reject`, or nothing we support).
    #[error("RFC 7143 section 12.1.3: no common CHAP algorithm")]
    NoCommonAlgorithm,
    /// The target chose an algorithm the initiator did not offer.
    #[error("RFC 7143 section 6.2.1: CHAP_A={0} was not offered")]
    AlgorithmNotOffered(u64),
    /// A challenge is shorter than the configured minimum.
    #[error("RFC 7143 section 9.2.1: CHAP challenge of {len} bytes is shorter than {min}")]
    ChallengeTooShort {
        /// Length received (or supplied).
        len: usize,
        /// Configured minimum.
        min: usize,
    },
    /// A challenge or response exceeds 1024 bytes ("their binary length ...
    /// MUST NOT exceed 1024 bytes").
    #[error("RFC 7143 section 12.1.3: CHAP value of {len} bytes exceeds 1024")]
    TooLong {
        /// Decoded length.
        len: usize,
    },
    /// The challenge for the other direction equals the one received
    /// (RFC 7143 section 9.2.1: "Originators MUST NOT reuse the CHAP
    /// challenge sent by the Responder for the other direction of a
    /// bidirectional authentication. Responders MUST check for this
    /// condition").
    #[error("RFC 7143 section 9.2.1: reflected CHAP challenge")]
    ReflectedChallenge,
    /// The peer's response equals what we would compute with our own secret
    /// (RFC 7143 section 9.2.1: such a response "MUST be treated as an
    /// authentication failure").
    #[error("RFC 7143 section 9.2.1: reflected CHAP response")]
    ReflectedResponse,
    /// `CHAP_N` is not the expected name.
    #[error("RFC 7143 section 12.1.3: unexpected CHAP_N")]
    WrongName,
    /// `CHAP_R` does not verify.
    #[error("RFC 7143 section 12.1.3: CHAP response does not verify (authentication failure)")]
    AuthenticationFailed,
    /// The peer asked for mutual CHAP but no credentials are configured for it.
    #[error("RFC 7143 section 12.1.3: mutual CHAP requested but not configured")]
    MutualNotConfigured,
    /// Mutual CHAP is configured but the caller supplied no challenge, or the
    /// target did not answer it.
    #[error("RFC 7143 section 12.1.3: mutual CHAP challenge missing")]
    MutualChallengeMissing,
    /// A secret is empty (RFC 1994 section 2.2: at least 1 octet).
    #[error("RFC 1994 section 2.2: empty CHAP secret")]
    EmptySecret,
    /// The same secret is configured for both directions (RFC 7143 section
    /// 9.2.1: "Any CHAP secret used for initiator authentication MUST NOT be
    /// configured for authentication of any target").
    #[error("RFC 7143 section 9.2.1: same CHAP secret configured for both directions")]
    SameSecretBothDirections,
    /// A step was called out of order.
    #[error("CHAP step called out of order")]
    OutOfOrder,
}

/// Initiator-side CHAP configuration.
#[derive(Debug, Clone)]
pub struct InitiatorChapConfig {
    /// Our name and secret (the target checks them).
    pub credentials: ChapCredentials,
    /// `CHAP_A` preference order; default `[Md5]`. MD5 is appended if absent
    /// (RFC 7143 section 12.1.3: "initiators MUST always offer it").
    pub algorithms: Vec<ChapAlgorithm>,
    /// For mutual CHAP: the target's expected name and secret.
    pub mutual: Option<ChapCredentials>,
    /// Shortest challenge accepted from the target (default 1 byte; RFC 1994
    /// section 2.3 prefers challenges at least as long as the hash).
    pub min_challenge_len: usize,
}

impl InitiatorChapConfig {
    /// One-way CHAP with MD5.
    pub fn new(credentials: ChapCredentials) -> Self {
        InitiatorChapConfig {
            credentials,
            algorithms: vec![ChapAlgorithm::Md5],
            mutual: None,
            min_challenge_len: 1,
        }
    }
}

fn find_unique<'a>(
    pairs: &'a [(String, String)],
    key: &'static str,
) -> Result<Option<&'a str>, ChapError> {
    let mut found = None;
    for (k, v) in pairs {
        if k == key {
            if found.is_some() {
                return Err(ChapError::DuplicateKey(key));
            }
            found = Some(v.as_str());
        }
    }
    Ok(found)
}

fn require<'a>(pairs: &'a [(String, String)], key: &'static str) -> Result<&'a str, ChapError> {
    find_unique(pairs, key)?.ok_or(ChapError::MissingKey(key))
}

fn parse_id(v: &str) -> Result<u8, ChapError> {
    let n = text::parse_number(v).map_err(|source| ChapError::Malformed {
        key: "CHAP_I",
        source,
    })?;
    u8::try_from(n).map_err(|_| ChapError::BadIdentifier(n))
}

fn parse_bin(key: &'static str, v: &str) -> Result<Vec<u8>, ChapError> {
    text::parse_binary(v, MAX_BINARY_LEN).map_err(|source| match source {
        text::TextError::BinaryTooLong { len, .. } => ChapError::TooLong { len },
        source => ChapError::Malformed { key, source },
    })
}

/// Compares two byte strings in time independent of where they differ
/// (the length itself is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // `subtle` compares equal-length slices without data-dependent branches
    // and answers false for different lengths.
    bool::from(subtle::ConstantTimeEq::ct_eq(a, b))
}

fn check_challenge(c: &[u8], min: usize) -> Result<(), ChapError> {
    if c.len() > MAX_BINARY_LEN {
        return Err(ChapError::TooLong { len: c.len() });
    }
    if c.len() < min.max(1) {
        return Err(ChapError::ChallengeTooShort {
            len: c.len(),
            min: min.max(1),
        });
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum IState {
    Start,
    Offered,
    Answered {
        alg: ChapAlgorithm,
        mutual: Option<(u8, Vec<u8>)>,
    },
    Done,
}

/// The initiator's side of a CHAP exchange.
#[derive(Debug, Clone)]
pub struct InitiatorChap {
    cfg: InitiatorChapConfig,
    state: IState,
}

impl InitiatorChap {
    /// Creates the exchange; refuses empty secrets.
    pub fn new(mut cfg: InitiatorChapConfig) -> Result<Self, ChapError> {
        if cfg.credentials.secret.is_empty()
            || cfg.mutual.as_ref().is_some_and(|m| m.secret.is_empty())
        {
            return Err(ChapError::EmptySecret);
        }
        if cfg
            .mutual
            .as_ref()
            .is_some_and(|m| m.secret == cfg.credentials.secret)
        {
            return Err(ChapError::SameSecretBothDirections);
        }
        // RFC 7143 section 12.1.3: "To guarantee interoperability, initiators
        // MUST always offer it [MD5] as one of the proposed algorithms."
        if !cfg.algorithms.contains(&ChapAlgorithm::Md5) {
            cfg.algorithms.push(ChapAlgorithm::Md5);
        }
        Ok(InitiatorChap {
            cfg,
            state: IState::Start,
        })
    }

    /// Step 1: `CHAP_A=<A1,A2...>` "in order of preference".
    pub fn offer(&mut self) -> Vec<(String, String)> {
        self.state = IState::Offered;
        let list: Vec<String> = self
            .cfg
            .algorithms
            .iter()
            .map(|a| a.code().to_string())
            .collect();
        vec![("CHAP_A".to_owned(), list.join(","))]
    }

    /// True if mutual CHAP is configured.
    pub fn is_mutual(&self) -> bool {
        self.cfg.mutual.is_some()
    }

    /// Step 3: consumes the target's `CHAP_A`, `CHAP_I`, `CHAP_C` and returns
    /// `CHAP_N`, `CHAP_R` and, for mutual CHAP, our `CHAP_I` and `CHAP_C`
    /// built from `mutual_challenge` (identifier and challenge bytes the
    /// caller drew; required when mutual CHAP is configured).
    pub fn respond(
        &mut self,
        pairs: &[(String, String)],
        mutual_challenge: Option<(u8, &[u8])>,
    ) -> Result<Vec<(String, String)>, ChapError> {
        if !matches!(self.state, IState::Offered) {
            return Err(ChapError::OutOfOrder);
        }
        let a = require(pairs, "CHAP_A")?;
        if a == "Reject" {
            return Err(ChapError::NoCommonAlgorithm);
        }
        let code = text::parse_number(a).map_err(|source| ChapError::Malformed {
            key: "CHAP_A",
            source,
        })?;
        // RFC 7143 section 12.1.3: "Where A is one of A1,A2... that were
        // proposed by the initiator."
        let alg = ChapAlgorithm::from_code(code)
            .filter(|alg| self.cfg.algorithms.contains(alg))
            .ok_or(ChapError::AlgorithmNotOffered(code))?;
        let id = parse_id(require(pairs, "CHAP_I")?)?;
        let challenge = parse_bin("CHAP_C", require(pairs, "CHAP_C")?)?;
        check_challenge(&challenge, self.cfg.min_challenge_len)?;

        let response = alg.response(id, &self.cfg.credentials.secret, &challenge);
        let mut out = vec![
            ("CHAP_N".to_owned(), self.cfg.credentials.name.clone()),
            ("CHAP_R".to_owned(), text::encode_hex(&response)),
        ];
        let mutual = match (&self.cfg.mutual, mutual_challenge) {
            (None, _) => None,
            (Some(_), None) => return Err(ChapError::MutualChallengeMissing),
            (Some(_), Some((mid, mc))) => {
                check_challenge(mc, 1)?;
                // RFC 7143 section 9.2.1: "Originators MUST NOT reuse the
                // CHAP challenge sent by the Responder for the other
                // direction of a bidirectional authentication."
                if constant_time_eq(mc, &challenge) {
                    return Err(ChapError::ReflectedChallenge);
                }
                out.push(("CHAP_I".to_owned(), mid.to_string()));
                out.push(("CHAP_C".to_owned(), text::encode_hex(mc)));
                Some((mid, mc.to_vec()))
            }
        };
        self.state = IState::Answered { alg, mutual };
        Ok(out)
    }

    /// Step 4 (mutual CHAP only): verifies the target's `CHAP_N` and `CHAP_R`.
    /// "If target authentication fails, the initiator MUST close the
    /// connection" (RFC 7143 section 12.1.3): every error here means that.
    pub fn verify_target(&mut self, pairs: &[(String, String)]) -> Result<(), ChapError> {
        let IState::Answered { alg, mutual, .. } = &self.state else {
            return Err(ChapError::OutOfOrder);
        };
        let (Some(expected), Some((mid, mc))) = (&self.cfg.mutual, mutual) else {
            return Err(ChapError::OutOfOrder);
        };
        let n = require(pairs, "CHAP_N")?;
        let r = parse_bin("CHAP_R", require(pairs, "CHAP_R")?)?;
        let want = alg.response(*mid, &expected.secret, mc);
        // RFC 7143 section 9.2.1: a response equal to the one we would
        // generate for the same challenge "MUST be treated as an
        // authentication failure".
        let ours = alg.response(*mid, &self.cfg.credentials.secret, mc);
        let name_ok = constant_time_eq(n.as_bytes(), expected.name.as_bytes());
        let resp_ok = constant_time_eq(&r, &want);
        if constant_time_eq(&r, &ours) {
            return Err(ChapError::ReflectedResponse);
        }
        if !name_ok {
            return Err(ChapError::WrongName);
        }
        if !resp_ok {
            return Err(ChapError::AuthenticationFailed);
        }
        self.state = IState::Done;
        Ok(())
    }

    /// True once the exchange is complete: after [`Self::respond`] for
    /// one-way CHAP, after [`Self::verify_target`] for mutual CHAP.
    pub fn is_complete(&self) -> bool {
        match &self.state {
            IState::Done => true,
            IState::Answered { mutual, .. } => mutual.is_none(),
            _ => false,
        }
    }
}

/// Target-side CHAP configuration.
#[derive(Debug, Clone)]
pub struct TargetChapConfig {
    /// The initiator's expected name and secret.
    pub initiator: ChapCredentials,
    /// Algorithms the target accepts, any order (the initiator's preference
    /// wins, RFC 7143 section 6.2.1). Default `[Md5]`.
    pub algorithms: Vec<ChapAlgorithm>,
    /// The target's own name and secret, for answering mutual CHAP.
    pub mutual: Option<ChapCredentials>,
    /// Shortest mutual challenge accepted from the initiator (default 1).
    pub min_challenge_len: usize,
}

impl TargetChapConfig {
    /// MD5 only, no mutual CHAP.
    pub fn new(initiator: ChapCredentials) -> Self {
        TargetChapConfig {
            initiator,
            algorithms: vec![ChapAlgorithm::Md5],
            mutual: None,
            min_challenge_len: 1,
        }
    }
}

#[derive(Debug, Clone)]
enum TState {
    Start,
    Challenged {
        alg: ChapAlgorithm,
        id: u8,
        challenge: Vec<u8>,
    },
    Done,
}

/// The target's side of a CHAP exchange.
#[derive(Debug, Clone)]
pub struct TargetChap {
    cfg: TargetChapConfig,
    state: TState,
}

impl TargetChap {
    /// Creates the exchange; refuses empty secrets.
    pub fn new(cfg: TargetChapConfig) -> Result<Self, ChapError> {
        if cfg.initiator.secret.is_empty()
            || cfg.mutual.as_ref().is_some_and(|m| m.secret.is_empty())
        {
            return Err(ChapError::EmptySecret);
        }
        if cfg
            .mutual
            .as_ref()
            .is_some_and(|m| m.secret == cfg.initiator.secret)
        {
            return Err(ChapError::SameSecretBothDirections);
        }
        Ok(TargetChap {
            cfg,
            state: TState::Start,
        })
    }

    /// Step 2: picks the first of the initiator's `CHAP_A` values we support
    /// and issues `CHAP_A`, `CHAP_I`, `CHAP_C` with the caller's identifier
    /// and challenge bytes. With no common algorithm the target "MUST answer
    /// with a Login reject with the Authentication Failure status":
    /// [`ChapError::NoCommonAlgorithm`].
    pub fn challenge(
        &mut self,
        pairs: &[(String, String)],
        id: u8,
        challenge: &[u8],
    ) -> Result<Vec<(String, String)>, ChapError> {
        if !matches!(self.state, TState::Start) {
            return Err(ChapError::OutOfOrder);
        }
        check_challenge(challenge, 1)?;
        let list = require(pairs, "CHAP_A")?;
        // RFC 7143 section 6.2.1: "If an acceptor does not understand any
        // particular value in a list, it MUST ignore it."
        let alg = list
            .split(',')
            .filter_map(|v| text::parse_number(v).ok())
            .filter_map(ChapAlgorithm::from_code)
            .find(|a| self.cfg.algorithms.contains(a))
            .ok_or(ChapError::NoCommonAlgorithm)?;
        self.state = TState::Challenged {
            alg,
            id,
            challenge: challenge.to_vec(),
        };
        Ok(vec![
            ("CHAP_A".to_owned(), alg.code().to_string()),
            ("CHAP_I".to_owned(), id.to_string()),
            ("CHAP_C".to_owned(), text::encode_hex(challenge)),
        ])
    }

    /// Step 3/4: verifies the initiator's `CHAP_N`/`CHAP_R`; if it also sent
    /// `CHAP_I`/`CHAP_C` (mutual CHAP), returns our `CHAP_N`/`CHAP_R`,
    /// otherwise an empty list. Any error means Login reject with
    /// "Authentication Failure" (0x0201).
    pub fn verify(
        &mut self,
        pairs: &[(String, String)],
    ) -> Result<Vec<(String, String)>, ChapError> {
        let TState::Challenged { alg, id, challenge } = &self.state else {
            return Err(ChapError::OutOfOrder);
        };
        let (alg, id) = (*alg, *id);
        let n = require(pairs, "CHAP_N")?;
        let r = parse_bin("CHAP_R", require(pairs, "CHAP_R")?)?;
        let want = alg.response(id, &self.cfg.initiator.secret, challenge);
        let name_ok = constant_time_eq(n.as_bytes(), self.cfg.initiator.name.as_bytes());
        let resp_ok = constant_time_eq(&r, &want);
        if let Some(own) = &self.cfg.mutual {
            // RFC 7143 section 9.2.1: a response equal to the one we would
            // generate ourselves is a failure.
            if constant_time_eq(&r, &alg.response(id, &own.secret, challenge)) {
                return Err(ChapError::ReflectedResponse);
            }
        }
        if !name_ok {
            return Err(ChapError::WrongName);
        }
        if !resp_ok {
            return Err(ChapError::AuthenticationFailed);
        }
        let mi = find_unique(pairs, "CHAP_I")?;
        let mc = find_unique(pairs, "CHAP_C")?;
        let out = match (mi, mc) {
            (None, None) => Vec::new(),
            (Some(_), None) => return Err(ChapError::MissingKey("CHAP_C")),
            (None, Some(_)) => return Err(ChapError::MissingKey("CHAP_I")),
            (Some(mi), Some(mc)) => {
                let own = self
                    .cfg
                    .mutual
                    .as_ref()
                    .ok_or(ChapError::MutualNotConfigured)?;
                let mid = parse_id(mi)?;
                let mc = parse_bin("CHAP_C", mc)?;
                check_challenge(&mc, self.cfg.min_challenge_len)?;
                // RFC 7143 section 9.2.1: "Responders MUST check for this
                // condition [a reused challenge] and close the iSCSI TCP
                // connection if it occurs."
                if constant_time_eq(&mc, challenge) {
                    return Err(ChapError::ReflectedChallenge);
                }
                let resp = alg.response(mid, &own.secret, &mc);
                vec![
                    ("CHAP_N".to_owned(), own.name.clone()),
                    ("CHAP_R".to_owned(), text::encode_hex(&resp)),
                ]
            }
        };
        self.state = TState::Done;
        Ok(out)
    }

    /// True once the initiator has been verified.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, TState::Done)
    }
}
