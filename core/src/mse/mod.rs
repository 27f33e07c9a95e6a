//! Message Stream Encryption (MSE/PE): the obfuscated handshake most desktop clients speak
//! before the BitTorrent handshake, and RC4 for what follows when both sides choose it.
//!
//! A [`Handshake`] is sans-IO like the rest of core: feed it the bytes the peer sent
//! ([`Handshake::handle_data`]), send what [`Handshake::poll_transmit`] returns, and once
//! [`Handshake::is_done`] take the [`Established`] stream state: the torrent it was for, the
//! method chosen, the ciphers that continue the stream (RC4) and the bytes already received
//! after the handshake (decrypted).
//!
//! The exchange (A connects, B accepts; S the Diffie-Hellman secret, SKEY the info hash):
//!
//! 1. A→B: Ya, PadA
//! 2. B→A: Yb, PadB
//! 3. A→B: SHA1("req1", S), SHA1("req2", SKEY) xor SHA1("req3", S),
//!    RC4A(VC, crypto_provide, len(PadC), PadC, len(IA)), RC4A(IA)
//! 4. B→A: RC4B(VC, crypto_select, len(PadD), PadD), then the payload in the chosen method
//! 5. A→B: the payload in the chosen method
//!
//! Every length is bounded (pads at most 512 bytes, the synchronisation points at 628 and
//! 616 bytes from the start, the initial payload at 64 KiB); anything else is an
//! [`MseError`].

mod dh;
mod rc4;

pub use dh::{PrivateKey, PUBLIC_KEY_LEN};
pub use rc4::Rc4;

use sha1::{Digest, Sha1};

use crate::id::InfoHash;
use crate::rng::Rng;

/// Longest padding either side may send (PadA, PadB, PadC, PadD).
pub const MAX_PAD: usize = 512;
/// The verification constant: eight zero bytes, encrypted.
const VC: [u8; 8] = [0; 8];
/// `crypto_provide`/`crypto_select` bit for plaintext after the handshake.
const PLAINTEXT: u32 = 0x01;
/// `crypto_provide`/`crypto_select` bit for RC4 after the handshake.
const RC4: u32 = 0x02;
/// Most bytes a handshake buffers (its own messages at their longest plus one full
/// initial payload and a read's worth of what follows).
const MAX_BUFFER: usize = 2 * (PUBLIC_KEY_LEN + MAX_PAD + 64) + u16::MAX as usize + 64 * 1024;

/// What protects the stream after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Nothing: the handshake only obfuscated the start of the connection.
    Plaintext,
    /// RC4 in both directions.
    Rc4,
}

/// The methods one side accepts after the handshake, and which it picks when the other
/// offers both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Methods {
    /// Plaintext allowed.
    pub plaintext: bool,
    /// RC4 allowed.
    pub rc4: bool,
    /// Picked when both are offered and allowed.
    pub prefer: Method,
}

impl Methods {
    /// Either method, RC4 when the other side offers both.
    pub const PREFER_RC4: Methods = Methods {
        plaintext: true,
        rc4: true,
        prefer: Method::Rc4,
    };
    /// Either method, plaintext when the other side offers both.
    pub const PREFER_PLAINTEXT: Methods = Methods {
        plaintext: true,
        rc4: true,
        prefer: Method::Plaintext,
    };
    /// RC4 only.
    pub const RC4_ONLY: Methods = Methods {
        plaintext: false,
        rc4: true,
        prefer: Method::Rc4,
    };

    fn bits(self) -> u32 {
        (if self.plaintext { PLAINTEXT } else { 0 }) | (if self.rc4 { RC4 } else { 0 })
    }

    /// The method picked from `provided` (the other side's bits), if any is common.
    fn select(self, provided: u32) -> Option<Method> {
        let rc4 = self.rc4 && provided & RC4 != 0;
        let plain = self.plaintext && provided & PLAINTEXT != 0;
        match (rc4, plain) {
            (true, true) => Some(self.prefer),
            (true, false) => Some(Method::Rc4),
            (false, true) => Some(Method::Plaintext),
            (false, false) => None,
        }
    }
}

/// Why a handshake failed. The connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MseError {
    /// The other side's public key is not a valid Diffie-Hellman value (0, 1, P-1 or larger).
    #[error("the peer's Diffie-Hellman public key is invalid")]
    BadPublicKey,
    /// The expected hash or verification constant did not appear within its window.
    #[error("the encrypted handshake never synchronised (no {0} within its window)")]
    NoSync(&'static str),
    /// The peer asked for a torrent we do not have.
    #[error("the encrypted handshake names a torrent we do not have")]
    UnknownTorrent,
    /// The verification constant decrypted to something other than zeros.
    #[error("the verification constant does not decrypt to zeros")]
    BadVerification,
    /// No method both sides allow.
    #[error(
        "no encryption method both sides allow (peer offers {provided:#x}, we allow {allowed:#x})"
    )]
    NoCommonMethod {
        /// The peer's bits.
        provided: u32,
        /// Ours.
        allowed: u32,
    },
    /// The responder chose a method we did not offer, or more than one.
    #[error("the peer selected method {0:#x}, which was not offered")]
    BadSelect(u32),
    /// A padding length over [`MAX_PAD`].
    #[error("padding of {0} bytes (at most {MAX_PAD})")]
    PadTooLong(usize),
    /// More bytes than a handshake can need arrived before it finished.
    #[error("the peer sent more than a handshake needs before finishing it")]
    TooMuchData,
    /// Data was fed after the handshake finished.
    #[error("the handshake is over")]
    Finished,
}

/// The stream after a successful handshake.
#[derive(Debug)]
pub struct Established {
    /// The torrent the connection is for (the responder learns it from the handshake).
    pub info_hash: InfoHash,
    /// The method chosen for what follows.
    pub method: Method,
    /// RC4 ciphers for what follows (`(decrypt what we read, encrypt what we write)`), or
    /// `None` for plaintext.
    pub ciphers: Option<(Rc4, Rc4)>,
    /// Bytes the peer sent after its part of the handshake, decrypted: for a responder the
    /// initial payload (IA) first.
    pub received: Vec<u8>,
}

#[derive(Debug)]
enum State {
    /// Initiator: waiting for Yb.
    AwaitKey,
    /// Initiator: looking for RC4B(VC) after Yb and PadB.
    SyncVc {
        expect: [u8; 8],
    },
    /// Initiator: crypto_select and len(PadD).
    Select,
    /// Initiator: PadD.
    PadD {
        len: usize,
        method: Method,
    },
    /// Responder: waiting for Ya.
    AwaitYa,
    /// Responder: looking for SHA1("req1", S) after Ya and PadA.
    SyncReq1 {
        expect: [u8; 20],
    },
    /// Responder: the obfuscated torrent hash.
    Skey,
    /// Responder: VC, crypto_provide, len(PadC).
    Provide,
    /// Responder: PadC and len(IA).
    PadC {
        len: usize,
        provided: u32,
    },
    /// Responder: IA.
    Ia {
        len: usize,
        provided: u32,
    },
    Done,
    Failed,
}

/// One side of an MSE handshake.
#[derive(Debug)]
pub struct Handshake {
    initiator: bool,
    state: State,
    key: PrivateKey,
    /// The shared secret, once both public keys are known.
    secret: Option<[u8; PUBLIC_KEY_LEN]>,
    info_hash: Option<InfoHash>,
    methods: Methods,
    /// Decrypts what we read / encrypts what we write, once the torrent is known.
    read: Option<Rc4>,
    write: Option<Rc4>,
    /// Received, not yet consumed.
    buf: Vec<u8>,
    /// Bytes consumed since the connection started (for the synchronisation windows).
    consumed: usize,
    /// Initiator: the initial payload to send in step 3.
    ia: Vec<u8>,
    /// Responder: the initial payload received.
    received_ia: Vec<u8>,
    method: Option<Method>,
    out: Vec<u8>,
    rng: Rng,
}

fn sha1_parts(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `SHA1("req2", info_hash)`: what a responder compares the deobfuscated torrent hash with.
/// Drivers may keep it per torrent to answer [`Handshake::handle_data`]'s lookups quickly.
pub fn req2_hash(info_hash: &InfoHash) -> [u8; 20] {
    sha1_parts(&[b"req2", &info_hash.0])
}

impl Handshake {
    /// The connecting side for torrent `info_hash`, offering `methods`, with `ia` (at most
    /// 64 KiB, usually empty or the BitTorrent handshake) sent inside step 3. `entropy`
    /// must come from a cryptographic source: its first 20 bytes are the private key, the
    /// rest choose the padding.
    pub fn initiator(
        info_hash: InfoHash,
        methods: Methods,
        ia: &[u8],
        entropy: [u8; 32],
    ) -> Handshake {
        let mut h = Handshake::new(true, methods, entropy);
        h.info_hash = Some(info_hash);
        h.ia = ia[..ia.len().min(usize::from(u16::MAX))].to_vec();
        h.state = State::AwaitKey;
        h.send_public_key();
        h
    }

    /// The accepting side, allowing `methods`; it learns the torrent from the handshake.
    /// Nothing is sent before the peer's public key arrives. `entropy` as for
    /// [`Handshake::initiator`].
    pub fn responder(methods: Methods, entropy: [u8; 32]) -> Handshake {
        let mut h = Handshake::new(false, methods, entropy);
        h.state = State::AwaitYa;
        h
    }

    fn new(initiator: bool, methods: Methods, entropy: [u8; 32]) -> Handshake {
        let mut private = [0u8; 20];
        private.copy_from_slice(&entropy[..20]);
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&entropy[20..28]);
        let mut rng = Rng::new(u64::from_le_bytes(seed));
        // Mix in the rest so that all 96 bits not in the key vary the padding.
        let extra = u32::from_le_bytes([entropy[28], entropy[29], entropy[30], entropy[31]]);
        for _ in 0..(extra & 7) {
            rng.next_u64();
        }
        Handshake {
            initiator,
            state: State::Failed,
            key: PrivateKey::new(private),
            secret: None,
            info_hash: None,
            methods,
            read: None,
            write: None,
            buf: Vec::new(),
            consumed: 0,
            ia: Vec::new(),
            received_ia: Vec::new(),
            method: None,
            out: Vec::new(),
            rng,
        }
    }

    fn send_public_key(&mut self) {
        self.out.extend_from_slice(&self.key.public_key());
        let pad = self.rng.below(MAX_PAD as u64 + 1) as usize;
        let start = self.out.len();
        self.out.resize(start + pad, 0);
        self.rng.fill(&mut self.out[start..]);
    }

    /// Bytes to send now, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.out))
        }
    }

    /// True once the handshake has succeeded (then call [`Handshake::into_established`]).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Bytes the other side has sent so far, counted from the start of the connection.
    pub fn bytes_received(&self) -> usize {
        self.consumed + self.buf.len()
    }

    /// Feeds bytes the peer sent. A responder calls `lookup` once with the
    /// `SHA1("req2", info hash)` the initiator chose (see [`req2_hash`]) and expects the
    /// torrent's info hash back, or `None` if it has no such torrent.
    pub fn handle_data(
        &mut self,
        data: &[u8],
        lookup: impl Fn(&[u8; 20]) -> Option<InfoHash>,
    ) -> Result<(), MseError> {
        match self.state {
            State::Done => return Err(MseError::Finished),
            State::Failed => return Err(MseError::TooMuchData),
            _ => {}
        }
        if self.buf.len() + data.len() > MAX_BUFFER {
            self.state = State::Failed;
            return Err(MseError::TooMuchData);
        }
        self.buf.extend_from_slice(data);
        let r = self.advance(&lookup);
        if r.is_err() {
            self.state = State::Failed;
        }
        r
    }

    /// Removes `n` bytes from the front of the buffer.
    fn consume(&mut self, n: usize) -> Vec<u8> {
        self.consumed += n;
        self.buf.drain(..n).collect()
    }

    fn decrypt(&mut self, n: usize) -> Vec<u8> {
        let mut v = self.consume(n);
        if let Some(r) = &mut self.read {
            r.apply(&mut v);
        }
        v
    }

    fn keys(&mut self, peer_public: &[u8]) -> Result<[u8; PUBLIC_KEY_LEN], MseError> {
        let secret = self
            .key
            .shared_secret(peer_public)
            .ok_or(MseError::BadPublicKey)?;
        self.secret = Some(secret);
        Ok(secret)
    }

    fn start_ciphers(&mut self, secret: &[u8], skey: &InfoHash) {
        let a = Rc4::mse(&sha1_parts(&[b"keyA", secret, &skey.0]));
        let b = Rc4::mse(&sha1_parts(&[b"keyB", secret, &skey.0]));
        if self.initiator {
            self.write = Some(a);
            self.read = Some(b);
        } else {
            self.read = Some(a);
            self.write = Some(b);
        }
    }

    fn encrypt_out(&mut self, mut data: Vec<u8>) {
        if let Some(w) = &mut self.write {
            w.apply(&mut data);
        }
        self.out.extend_from_slice(&data);
    }

    fn advance(&mut self, lookup: &dyn Fn(&[u8; 20]) -> Option<InfoHash>) -> Result<(), MseError> {
        loop {
            let progressed = match std::mem::replace(&mut self.state, State::Failed) {
                State::AwaitKey => {
                    if self.buf.len() < PUBLIC_KEY_LEN {
                        self.state = State::AwaitKey;
                        false
                    } else {
                        let yb = self.consume(PUBLIC_KEY_LEN);
                        let secret = self.keys(&yb)?;
                        let skey = self.info_hash.ok_or(MseError::UnknownTorrent)?;
                        self.start_ciphers(&secret, &skey);
                        let req1 = sha1_parts(&[b"req1", &secret]);
                        let req3 = sha1_parts(&[b"req3", &secret]);
                        let mut obfuscated = req2_hash(&skey);
                        for (o, x) in obfuscated.iter_mut().zip(req3) {
                            *o ^= x;
                        }
                        self.out.extend_from_slice(&req1);
                        self.out.extend_from_slice(&obfuscated);
                        let mut plain = Vec::with_capacity(16 + self.ia.len());
                        plain.extend_from_slice(&VC);
                        plain.extend_from_slice(&self.methods.bits().to_be_bytes());
                        plain.extend_from_slice(&0u16.to_be_bytes()); // len(PadC)
                        plain.extend_from_slice(&(self.ia.len() as u16).to_be_bytes());
                        plain.extend_from_slice(&std::mem::take(&mut self.ia));
                        self.encrypt_out(plain);
                        // What RC4B(VC) looks like, without moving the read cipher on.
                        let mut expect = VC;
                        if let Some(r) = &self.read {
                            r.clone().apply(&mut expect);
                        }
                        self.state = State::SyncVc { expect };
                        true
                    }
                }
                State::SyncVc { expect } => {
                    // VC starts after Yb and at most MAX_PAD bytes of PadB.
                    let window = MAX_PAD + expect.len();
                    let found = self.buf.windows(expect.len()).position(|w| w == expect);
                    match found {
                        Some(i) if i <= MAX_PAD => {
                            self.consume(i);
                            let vc = self.decrypt(expect.len());
                            debug_assert_eq!(vc, VC);
                            self.state = State::Select;
                            true
                        }
                        _ if self.buf.len() >= window => {
                            return Err(MseError::NoSync("verification constant"));
                        }
                        _ => {
                            self.state = State::SyncVc { expect };
                            false
                        }
                    }
                }
                State::Select => {
                    if self.buf.len() < 6 {
                        self.state = State::Select;
                        false
                    } else {
                        let v = self.decrypt(6);
                        let select = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
                        let len = usize::from(u16::from_be_bytes([v[4], v[5]]));
                        let method = match select {
                            RC4 if self.methods.rc4 => Method::Rc4,
                            PLAINTEXT if self.methods.plaintext => Method::Plaintext,
                            other => return Err(MseError::BadSelect(other)),
                        };
                        if len > MAX_PAD {
                            return Err(MseError::PadTooLong(len));
                        }
                        self.state = State::PadD { len, method };
                        true
                    }
                }
                State::PadD { len, method } => {
                    if self.buf.len() < len {
                        self.state = State::PadD { len, method };
                        false
                    } else {
                        self.decrypt(len);
                        self.finish(method);
                        return Ok(());
                    }
                }
                State::AwaitYa => {
                    if self.buf.len() < PUBLIC_KEY_LEN {
                        self.state = State::AwaitYa;
                        false
                    } else {
                        let ya = self.consume(PUBLIC_KEY_LEN);
                        let secret = self.keys(&ya)?;
                        self.send_public_key();
                        let expect = sha1_parts(&[b"req1", &secret]);
                        self.state = State::SyncReq1 { expect };
                        true
                    }
                }
                State::SyncReq1 { expect } => {
                    let window = MAX_PAD + expect.len();
                    let found = self.buf.windows(expect.len()).position(|w| w == expect);
                    match found {
                        Some(i) if i <= MAX_PAD => {
                            self.consume(i + expect.len());
                            self.state = State::Skey;
                            true
                        }
                        _ if self.buf.len() >= window => {
                            return Err(MseError::NoSync("SHA1(req1, S)"));
                        }
                        _ => {
                            self.state = State::SyncReq1 { expect };
                            false
                        }
                    }
                }
                State::Skey => {
                    if self.buf.len() < 20 {
                        self.state = State::Skey;
                        false
                    } else {
                        let secret = self.secret.ok_or(MseError::BadPublicKey)?;
                        let v = self.consume(20);
                        let req3 = sha1_parts(&[b"req3", &secret]);
                        let mut req2 = [0u8; 20];
                        for (i, r) in req2.iter_mut().enumerate() {
                            *r = v[i] ^ req3[i];
                        }
                        let skey = lookup(&req2).ok_or(MseError::UnknownTorrent)?;
                        self.info_hash = Some(skey);
                        self.start_ciphers(&secret, &skey);
                        self.state = State::Provide;
                        true
                    }
                }
                State::Provide => {
                    if self.buf.len() < 14 {
                        self.state = State::Provide;
                        false
                    } else {
                        let v = self.decrypt(14);
                        if v[..8] != VC {
                            return Err(MseError::BadVerification);
                        }
                        let provided = u32::from_be_bytes([v[8], v[9], v[10], v[11]]);
                        let len = usize::from(u16::from_be_bytes([v[12], v[13]]));
                        if len > MAX_PAD {
                            return Err(MseError::PadTooLong(len));
                        }
                        self.state = State::PadC { len, provided };
                        true
                    }
                }
                State::PadC { len, provided } => {
                    if self.buf.len() < len + 2 {
                        self.state = State::PadC { len, provided };
                        false
                    } else {
                        let v = self.decrypt(len + 2);
                        let ia = usize::from(u16::from_be_bytes([v[len], v[len + 1]]));
                        self.state = State::Ia { len: ia, provided };
                        true
                    }
                }
                State::Ia { len, provided } => {
                    if self.buf.len() < len {
                        self.state = State::Ia { len, provided };
                        false
                    } else {
                        self.received_ia = self.decrypt(len);
                        let method =
                            self.methods
                                .select(provided)
                                .ok_or(MseError::NoCommonMethod {
                                    provided,
                                    allowed: self.methods.bits(),
                                })?;
                        let select = match method {
                            Method::Rc4 => RC4,
                            Method::Plaintext => PLAINTEXT,
                        };
                        let mut plain = Vec::with_capacity(14);
                        plain.extend_from_slice(&VC);
                        plain.extend_from_slice(&select.to_be_bytes());
                        plain.extend_from_slice(&0u16.to_be_bytes()); // len(PadD)
                        self.encrypt_out(plain);
                        self.finish(method);
                        return Ok(());
                    }
                }
                State::Done => {
                    self.state = State::Done;
                    return Ok(());
                }
                State::Failed => return Err(MseError::TooMuchData),
            };
            if !progressed {
                return Ok(());
            }
        }
    }

    fn finish(&mut self, method: Method) {
        self.method = Some(method);
        self.state = State::Done;
        // What follows is in the chosen method: decrypt it here for plaintext's sake too.
        let rest = std::mem::take(&mut self.buf);
        let mut received = std::mem::take(&mut self.received_ia);
        let start = received.len();
        received.extend_from_slice(&rest);
        if method == Method::Rc4 {
            if let Some(r) = &mut self.read {
                r.apply(&mut received[start..]);
            }
        }
        self.buf = received;
    }

    /// The stream state after a successful handshake, or `None` if it has not succeeded.
    /// Send what [`Handshake::poll_transmit`] still holds first.
    pub fn into_established(mut self) -> Option<Established> {
        if !self.is_done() {
            return None;
        }
        let method = self.method?;
        let info_hash = self.info_hash?;
        let ciphers = match method {
            Method::Rc4 => Some((self.read.take()?, self.write.take()?)),
            Method::Plaintext => None,
        };
        Some(Established {
            info_hash,
            method,
            ciphers,
            received: std::mem::take(&mut self.buf),
        })
    }
}

#[cfg(test)]
mod tests;
