//! One TCP connection to the target under test: blocking std sockets with
//! deadlines, the core's streaming PDU decoder, and a transcript of every
//! byte (for the finding's pcap).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use iscsi_proto::wire::{DecoderConfig, Digests, Pdu, PduDecoder, WireError};

/// Which way a chunk of bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From the fuzzer to the target.
    Sent,
    /// From the target to the fuzzer.
    Received,
}

/// Bytes sent or received in one socket call.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Direction.
    pub dir: Dir,
    /// Microseconds since the connection started.
    pub micros: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// The most transcript bytes kept per connection (later bytes are counted,
/// not kept), so a long case cannot grow memory without bound.
const MAX_TRANSCRIPT: usize = 4 << 20;

/// What [`Conn::recv`] got.
#[derive(Debug)]
pub enum Recv {
    /// A whole PDU.
    Pdu(Box<Pdu>),
    /// The target closed the connection (EOF or reset).
    Closed,
    /// Nothing within the deadline.
    Timeout,
    /// Bytes that are not a valid PDU (the connection is unusable after).
    Malformed(WireError),
}

/// A connection to the target.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    decoder: PduDecoder,
    start: Instant,
    kept: usize,
    /// Everything sent and received, in order (up to 4 MiB).
    pub transcript: Vec<Chunk>,
    /// The target closed the connection, or it broke.
    pub closed: bool,
    /// Digests on PDUs we send (on after login when negotiated).
    pub digests: Digests,
}

impl Conn {
    /// Connects within `timeout`.
    pub fn connect(addr: &str, timeout: Duration) -> io::Result<Conn> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for a in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_write_timeout(Some(timeout))?;
                    return Ok(Conn {
                        stream,
                        buf: BytesMut::with_capacity(64 * 1024),
                        decoder: PduDecoder::new(DecoderConfig::default()),
                        start: Instant::now(),
                        kept: 0,
                        transcript: Vec::new(),
                        closed: false,
                        digests: Digests::NONE,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Digests on both directions from now on (RFC 7143 section 13.1: they
    /// start with the first PDU after the final Login Response).
    pub fn set_digests(&mut self, d: Digests) {
        self.digests = d;
        self.decoder.set_digests(d);
    }

    /// The MaxRecvDataSegmentLength we declared (what we accept).
    pub fn set_max_recv(&mut self, max: u32) {
        self.decoder.set_max_data_segment_length(max);
    }

    fn record(&mut self, dir: Dir, bytes: &[u8]) {
        if self.kept >= MAX_TRANSCRIPT {
            return;
        }
        let take = bytes.len().min(MAX_TRANSCRIPT - self.kept);
        self.kept += take;
        let micros = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.transcript.push(Chunk {
            dir,
            micros,
            bytes: bytes.get(..take).unwrap_or(&[]).to_vec(),
        });
    }

    /// Writes all of `bytes`; a failed write marks the connection closed.
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        if self.closed {
            return false;
        }
        self.record(Dir::Sent, bytes);
        match self.stream.write_all(bytes) {
            Ok(()) => true,
            Err(_) => {
                self.closed = true;
                false
            }
        }
    }

    /// Half-closes our direction (the target should then close its own).
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Closes the socket both ways.
    pub fn close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        self.closed = true;
    }

    /// The next PDU from the target, waiting at most `wait`.
    pub fn recv(&mut self, wait: Duration) -> Recv {
        let deadline = Instant::now() + wait;
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(pdu)) => return Recv::Pdu(Box::new(pdu)),
                Ok(None) => {}
                Err(e) => {
                    self.closed = true;
                    return Recv::Malformed(e);
                }
            }
            if self.closed {
                return Recv::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                return Recv::Timeout;
            }
            let left = (deadline - now).max(Duration::from_millis(1));
            if self.stream.set_read_timeout(Some(left)).is_err() {
                self.closed = true;
                return Recv::Closed;
            }
            let mut tmp = [0u8; 16 * 1024];
            match self.stream.read(&mut tmp) {
                Ok(0) => {
                    self.closed = true;
                    return Recv::Closed;
                }
                Ok(n) => {
                    let got = tmp.get(..n).unwrap_or(&[]);
                    self.record(Dir::Received, got);
                    self.buf.extend_from_slice(got);
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return Recv::Timeout
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = true;
                    return Recv::Closed;
                }
            }
        }
    }

    /// After a half-close: reads (and drops) until the target closes or
    /// `wait` passes; true if it closed.
    pub fn wait_closed(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while !self.closed {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let left = (deadline - now).max(Duration::from_millis(1));
            if self.stream.set_read_timeout(Some(left)).is_err() {
                return true;
            }
            let mut tmp = [0u8; 16 * 1024];
            match self.stream.read(&mut tmp) {
                Ok(0) => self.closed = true,
                Ok(n) => {
                    let got = tmp.get(..n).unwrap_or(&[]);
                    self.record(Dir::Received, got);
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return false
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.closed = true,
            }
        }
        true
    }
}
