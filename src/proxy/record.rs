//! TLS 1.3 records after the handshake, for wss:// tunnels that were set
//! aside (`park`).
//!
//! A TLS session in rustls owns its buffers and state machine, a dozen
//! KiB per connection. After the handshake, all a TLS 1.3 session needs is
//! small: for each direction the traffic secret, the AEAD key and IV
//! derived from it, and the record sequence number (RFC 8446 §5.2, §7.3).
//! When a quiet wss:// tunnel is parked, its session leaves rustls as that
//! [`Session`] — about two hundred bytes in the park table, no buffer —
//! and when the tunnel wakes, [`Sealed`] protects and checks its records
//! with ring's AEADs (the primitives rustls's ring provider uses), follows
//! the client's KeyUpdate, answers one that asks for it, and updates its
//! own keys before the AEAD's confidentiality limit (§4.6.3, §5.5).
//! Alerts: close_notify ends the client's direction (a half-close, passed
//! on as the tunnel passes one on), user_canceled is ignored, any other
//! ends the tunnel. Anything else a client may not send after its
//! handshake is answered with a fatal alert, as rustls answers it.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use zeroize::Zeroize;

use super::tunnel::AsTcp;

/// The most plaintext one record carries.
const MAX_PLAIN: usize = 1 << 14;
/// The most a protected record's body may be (§5.2).
const MAX_BODY: usize = MAX_PLAIN + 256;
const HEADER: usize = 5;
const TAG: usize = 16;
/// Records protected with one key before wsgate changes its keys: far
/// below the AEAD limits of §5.5 (2^24.5 records for AES-GCM).
const UPDATE_AT: u64 = 1 << 23;
/// Records without application data (KeyUpdates, ignorable alerts) in a
/// row before the client is refused, as rustls allows KeyUpdates.
const MAX_QUIET_RECORDS: usize = 32;

const APPLICATION_DATA: u8 = 23;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const KEY_UPDATE: u8 = 24;
const CLOSE_NOTIFY: u8 = 0;
const USER_CANCELED: u8 = 90;
const UNEXPECTED_MESSAGE: u8 = 10;
const BAD_RECORD_MAC: u8 = 20;
const RECORD_OVERFLOW: u8 = 22;
const DECODE_ERROR: u8 = 50;

/// The TLS 1.3 cipher suites rustls's ring provider offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Suite {
    pub fn of(suite: rustls::CipherSuite) -> Option<Suite> {
        match suite {
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => Some(Suite::Aes128Gcm),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => Some(Suite::Aes256Gcm),
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => Some(Suite::Chacha20Poly1305),
            _ => None,
        }
    }

    fn aead(self) -> &'static aead::Algorithm {
        match self {
            Suite::Aes128Gcm => &aead::AES_128_GCM,
            Suite::Aes256Gcm => &aead::AES_256_GCM,
            Suite::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }

    fn hkdf(self) -> hkdf::Algorithm {
        match self {
            Suite::Aes256Gcm => hkdf::HKDF_SHA384,
            _ => hkdf::HKDF_SHA256,
        }
    }

    /// The length of its traffic secrets.
    pub fn hash_len(self) -> usize {
        match self {
            Suite::Aes256Gcm => 48,
            _ => 32,
        }
    }

    fn key_len(self) -> usize {
        self.aead().key_len()
    }
}

/// HKDF-Expand-Label(secret, label, "", out.len()) (§7.1).
fn expand_label(suite: Suite, secret: &[u8], label: &[u8], out: &mut [u8]) {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let length = (out.len() as u16).to_be_bytes();
    let label_length = [(b"tls13 ".len() + label.len()) as u8];
    let info: [&[u8]; 5] = [&length, &label_length, b"tls13 ", label, &[0]];
    hkdf::Prk::new_less_safe(suite.hkdf(), secret)
        .expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("TLS 1.3 labels and lengths are within HKDF's limits");
}

/// One direction of a session: its traffic secret (absent when it could
/// not be checked, see [`Session::new`]), the key and IV in use, and the
/// next record's sequence number.
#[derive(Clone)]
pub struct Direction {
    secret: Option<[u8; 48]>,
    key: [u8; 32],
    iv: [u8; 12],
    seq: u64,
}

impl Direction {
    /// The key and IV a traffic secret gives (§7.3).
    pub fn from_secret(suite: Suite, secret: &[u8], seq: u64) -> Direction {
        let mut d = Direction {
            secret: Some([0; 48]),
            key: [0; 32],
            iv: [0; 12],
            seq,
        };
        if let Some(s) = d.secret.as_mut() {
            s[..secret.len()].copy_from_slice(secret);
        }
        expand_label(suite, secret, b"key", &mut d.key[..suite.key_len()]);
        expand_label(suite, secret, b"iv", &mut d.iv);
        d
    }

    /// A key and IV given as they are, without the secret they came from:
    /// such a direction cannot follow a KeyUpdate.
    pub fn from_key(key: &[u8], iv: &[u8], seq: u64) -> Option<Direction> {
        let mut d = Direction {
            secret: None,
            key: [0; 32],
            iv: iv.try_into().ok()?,
            seq,
        };
        d.key.get_mut(..key.len())?.copy_from_slice(key);
        Some(d)
    }

    /// The direction whose keys are `key` and `iv`: the traffic secret's
    /// own, or those of one of its next generations, when KeyUpdates went
    /// by before the session left rustls.
    pub fn matching(
        suite: Suite,
        secret: &[u8],
        key: &[u8],
        iv: &[u8],
        seq: u64,
    ) -> Option<Direction> {
        let mut d = Direction::from_secret(suite, secret, seq);
        for _ in 0..64 {
            if d.uses(suite, key, iv) {
                d.seq = seq;
                return Some(d);
            }
            d = d.next(suite)?;
        }
        None
    }

    /// Whether this direction protects with `key` and `iv`.
    pub fn uses(&self, suite: Suite, key: &[u8], iv: &[u8]) -> bool {
        key.len() == suite.key_len() && self.key[..key.len()] == *key && self.iv == *iv
    }

    /// The next generation of keys, after a KeyUpdate (§7.2).
    fn next(&self, suite: Suite) -> Option<Direction> {
        let secret = self.secret.as_ref()?;
        let mut next = [0u8; 48];
        let len = suite.hash_len();
        expand_label(suite, &secret[..len], b"traffic upd", &mut next[..len]);
        let d = Direction::from_secret(suite, &next[..len], 0);
        next.zeroize();
        Some(d)
    }

    fn nonce(&self) -> Nonce {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        Nonce::assume_unique_for_key(nonce)
    }

    fn aead_key(&self, suite: Suite) -> io::Result<LessSafeKey> {
        UnboundKey::new(suite.aead(), &self.key[..suite.key_len()])
            .map(LessSafeKey::new)
            .map_err(|_| io::Error::other("TLS key of the wrong length"))
    }
}

impl Drop for Direction {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
        if let Some(s) = self.secret.as_mut() {
            s.zeroize();
        }
    }
}

/// What a TLS 1.3 session needs after its handshake: all a parked wss://
/// tunnel keeps of it.
#[derive(Clone)]
pub struct Session {
    suite: Suite,
    /// Toward the client.
    tx: Direction,
    /// From the client.
    rx: Direction,
    /// The client asked for a KeyUpdate that wsgate has not sent yet.
    owe_update: bool,
}

impl Session {
    pub fn new(suite: Suite, tx: Direction, rx: Direction) -> Session {
        Session {
            suite,
            tx,
            rx,
            owe_update: false,
        }
    }
}

/// What one received record was.
#[derive(Debug, PartialEq, Eq)]
enum Opened {
    /// Application data: this many bytes at the record's plaintext start
    /// (`HEADER` into the record).
    Data(usize),
    /// close_notify: the client sends no more.
    Closed,
    /// A KeyUpdate, or an alert to ignore: nothing for the reader.
    Nothing,
}

/// A session with its AEAD keys set up: a tunnel's TLS side while it runs.
struct Live {
    session: Box<Session>,
    tx_key: LessSafeKey,
    rx_key: LessSafeKey,
    /// Records without application data since the last with some.
    quiet_records: usize,
}

/// A TLS error that ends the session, with the alert to send.
/// (No alert when the client's own alert ended it.)
struct Fatal(Option<u8>, &'static str);

impl Live {
    fn new(session: Box<Session>) -> io::Result<Live> {
        Ok(Live {
            tx_key: session.tx.aead_key(session.suite)?,
            rx_key: session.rx.aead_key(session.suite)?,
            session,
            quiet_records: 0,
        })
    }

    /// Appends one protected record of inner type `typ` carrying `data`
    /// (at most `MAX_PLAIN` bytes) to `out`.
    fn seal(&mut self, typ: u8, data: &[u8], out: &mut Vec<u8>) {
        debug_assert!(data.len() <= MAX_PLAIN);
        let body = data.len() + 1 + TAG;
        let start = out.len();
        out.extend_from_slice(&[APPLICATION_DATA, 3, 3]);
        out.extend_from_slice(&(body as u16).to_be_bytes());
        out.extend_from_slice(data);
        out.push(typ);
        let (header, rest) = out[start..].split_at_mut(HEADER);
        let tx = &mut self.session.tx;
        let tag = self
            .tx_key
            .seal_in_place_separate_tag(tx.nonce(), Aad::from(&*header), rest)
            .expect("records are far below the AEAD's length limit");
        tx.seq += 1;
        out.extend_from_slice(tag.as_ref());
    }

    /// Before application data: the KeyUpdate the client asked for, or
    /// wsgate's own before its key wears out; then the new keys.
    fn update_keys_if_due(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let session = &self.session;
        if !session.owe_update && session.tx.seq < UPDATE_AT {
            return Ok(());
        }
        let Some(next) = session.tx.next(session.suite) else {
            return Err(io::Error::other(
                "TLS keys cannot be updated (their secret was not known)",
            ));
        };
        // update_not_requested (§4.6.3).
        self.seal(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0], out);
        self.tx_key = next.aead_key(self.session.suite)?;
        self.session.tx = next;
        self.session.owe_update = false;
        Ok(())
    }

    /// Checks and decrypts the whole record `record` in place.
    fn open(&mut self, record: &mut [u8]) -> Result<Opened, Fatal> {
        let (header, body) = record.split_at_mut(HEADER);
        if header[0] != APPLICATION_DATA {
            return Err(Fatal(Some(UNEXPECTED_MESSAGE), "unprotected record"));
        }
        let rx = &mut self.session.rx;
        let plain = self
            .rx_key
            .open_in_place(rx.nonce(), Aad::from(&*header), body)
            .map_err(|_| Fatal(Some(BAD_RECORD_MAC), "record failed its check"))?;
        rx.seq += 1;
        if plain.len() > MAX_PLAIN + 1 {
            return Err(Fatal(Some(RECORD_OVERFLOW), "record too long"));
        }
        // The inner type is the last byte that is not padding.
        let Some(end) = plain.iter().rposition(|&b| b != 0) else {
            return Err(Fatal(Some(UNEXPECTED_MESSAGE), "record without a type"));
        };
        if end > MAX_PLAIN {
            return Err(Fatal(Some(RECORD_OVERFLOW), "record too long"));
        }
        let (content, typ) = (&plain[..end], plain[end]);
        if typ != APPLICATION_DATA {
            // As rustls bounds them: a client may not keep wsgate busy with
            // records that carry no data.
            self.quiet_records += 1;
            if self.quiet_records > MAX_QUIET_RECORDS {
                return Err(Fatal(
                    Some(UNEXPECTED_MESSAGE),
                    "too many records without data",
                ));
            }
        }
        match typ {
            APPLICATION_DATA => {
                self.quiet_records = 0;
                Ok(Opened::Data(end))
            }
            ALERT => match content {
                [_, CLOSE_NOTIFY] => Ok(Opened::Closed),
                [_, USER_CANCELED] => Ok(Opened::Nothing),
                [_, _] => Err(Fatal(None, "the client sent an alert")),
                _ => Err(Fatal(Some(DECODE_ERROR), "malformed alert")),
            },
            HANDSHAKE => self.handshake(content).map(|()| Opened::Nothing),
            _ => Err(Fatal(Some(UNEXPECTED_MESSAGE), "unexpected record type")),
        }
    }

    /// Handshake messages after the handshake: only KeyUpdate is the
    /// client's to send.
    fn handshake(&mut self, mut content: &[u8]) -> Result<(), Fatal> {
        if content.is_empty() {
            return Err(Fatal(Some(UNEXPECTED_MESSAGE), "empty handshake record"));
        }
        while let [typ, a, b, c, rest @ ..] = content {
            let len = u32::from_be_bytes([0, *a, *b, *c]) as usize;
            if *typ != KEY_UPDATE {
                return Err(Fatal(
                    Some(UNEXPECTED_MESSAGE),
                    "handshake message after the handshake",
                ));
            }
            let Some([asked]) = rest.get(..len) else {
                return Err(Fatal(Some(DECODE_ERROR), "malformed KeyUpdate"));
            };
            if *asked > 1 {
                return Err(Fatal(Some(DECODE_ERROR), "malformed KeyUpdate"));
            }
            let session = &mut self.session;
            let next = session.rx.next(session.suite).ok_or(Fatal(
                Some(UNEXPECTED_MESSAGE),
                "KeyUpdate without a known secret",
            ))?;
            self.rx_key = next
                .aead_key(session.suite)
                .map_err(|_| Fatal(Some(UNEXPECTED_MESSAGE), "KeyUpdate"))?;
            session.rx = next;
            session.owe_update |= *asked == 1;
            content = &rest[len..];
            // A change of keys ends its record (RFC 8446 §5.1).
            if !content.is_empty() {
                return Err(Fatal(
                    Some(UNEXPECTED_MESSAGE),
                    "data after a KeyUpdate in its record",
                ));
            }
        }
        if content.is_empty() {
            Ok(())
        } else {
            Err(Fatal(
                Some(DECODE_ERROR),
                "handshake message split across records",
            ))
        }
    }
}

/// The length of the whole record at the start of `bytes`, once all of
/// it is there; an error for a record longer than TLS allows.
fn whole_record(bytes: &[u8]) -> Result<Option<usize>, Fatal> {
    let Some(header) = bytes.get(..HEADER) else {
        return Ok(None);
    };
    let body = u16::from_be_bytes([header[3], header[4]]) as usize;
    if body > MAX_BODY {
        return Err(Fatal(Some(RECORD_OVERFLOW), "record too long"));
    }
    Ok((bytes.len() >= HEADER + body).then_some(HEADER + body))
}

/// What reads and writes give after a fatal error ended the session.
fn ended() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "TLS session ended by an error")
}

thread_local! {
    /// Room to read records into and to seal them in, per thread: a
    /// tunnel's TLS side keeps only what it could not hand on.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The client side of a woken wss:// tunnel: TLS 1.3 records on a TCP
/// socket, with wsgate's own record layer (see the module's text).
pub struct Sealed {
    tcp: TcpStream,
    live: Live,
    /// Received bytes not yet opened: part of a record, or whole records
    /// left when the reader's buffer was full.
    received: Vec<u8>,
    /// Opened application data the reader has not taken yet.
    plain: Vec<u8>,
    plain_from: usize,
    /// Sealed records not yet written.
    unsent: Vec<u8>,
    unsent_from: usize,
    read_closed: bool,
    close_sent: bool,
    /// A fatal error ended the session: nothing more is read or sealed.
    failed: bool,
}

impl Sealed {
    pub fn new(tcp: TcpStream, session: Box<Session>) -> io::Result<Sealed> {
        Ok(Sealed {
            tcp,
            live: Live::new(session)?,
            received: Vec::new(),
            plain: Vec::new(),
            plain_from: 0,
            unsent: Vec::new(),
            unsent_from: 0,
            read_closed: false,
            close_sent: false,
            failed: false,
        })
    }

    /// Nothing inside but the session: the tunnel may be parked again.
    pub fn at_rest(&self) -> bool {
        self.received.is_empty()
            && self.plain.is_empty()
            && self.unsent.is_empty()
            && !self.live.session.owe_update
            && !self.read_closed
            && !self.close_sent
    }

    /// The socket and the session, for the park table.
    pub fn into_parts(self) -> (TcpStream, Box<Session>) {
        (self.tcp, self.live.session)
    }

    /// Writes what is sealed and not yet sent.
    fn poll_unsent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.unsent_from < self.unsent.len() {
            let n =
                ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.unsent[self.unsent_from..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.unsent_from += n;
        }
        self.unsent = Vec::new();
        self.unsent_from = 0;
        Poll::Ready(Ok(()))
    }

    /// Sends `records` now as far as the socket takes them; keeps the
    /// rest for `poll_unsent`.
    fn send(&mut self, records: &[u8]) -> io::Result<()> {
        if !self.unsent.is_empty() {
            self.unsent.extend_from_slice(records);
            return Ok(());
        }
        let written = match self.tcp.try_write(records) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        if written < records.len() {
            self.unsent = records[written..].to_vec();
        }
        Ok(())
    }

    /// Ends the session for a fault of the client's: the alert rustls
    /// would send, then the error that ends the tunnel.
    fn fail(&mut self, Fatal(alert, why): Fatal) -> io::Error {
        self.failed = true;
        if let Some(alert) = alert {
            let mut record = Vec::new();
            self.live.seal(ALERT, &[2, alert], &mut record);
            let _ = self.send(&record);
        }
        io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {why}"))
    }

    /// Opens the whole records at the start of `bytes` while the reader
    /// has room (a record's plaintext it cannot take waits in `plain`);
    /// returns how many bytes were used. Each received byte is copied a
    /// bounded number of times, however small the records.
    fn open_records(&mut self, bytes: &mut [u8], buf: &mut ReadBuf<'_>) -> io::Result<usize> {
        let mut used = 0;
        while buf.remaining() > 0 && self.plain.is_empty() && !self.read_closed {
            let len = match whole_record(&bytes[used..]) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(fatal) => return Err(self.fail(fatal)),
            };
            let record = &mut bytes[used..used + len];
            used += len;
            match self.live.open(record) {
                Ok(Opened::Data(n)) => {
                    let data = &record[HEADER..HEADER + n];
                    let now = data.len().min(buf.remaining());
                    buf.put_slice(&data[..now]);
                    if now < n {
                        self.plain = data[now..].to_vec();
                        self.plain_from = 0;
                    }
                }
                Ok(Opened::Closed) => self.read_closed = true,
                Ok(Opened::Nothing) => {}
                Err(fatal) => return Err(self.fail(fatal)),
            }
        }
        if self.unsent.is_empty() {
            // Answer a KeyUpdate at once rather than with the next data
            // (with something still unsent, the next write answers it: a
            // client that asks again and again without reading gets one
            // answer at a time, as from rustls).
            self.answer_key_update()?;
        }
        Ok(used)
    }

    /// Sends the KeyUpdate the client asked for, if it is owed.
    fn answer_key_update(&mut self) -> io::Result<()> {
        if !self.live.session.owe_update {
            return Ok(());
        }
        let mut out = Vec::new();
        self.live.update_keys_if_due(&mut out)?;
        self.send(&out)
    }
}

impl AsyncRead for Sealed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Err(ended()));
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.plain_from < this.plain.len() {
                let rest = &this.plain[this.plain_from..];
                let n = rest.len().min(buf.remaining());
                buf.put_slice(&rest[..n]);
                this.plain_from += n;
                if this.plain_from == this.plain.len() {
                    this.plain = Vec::new();
                    this.plain_from = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.read_closed {
                return Poll::Ready(Ok(()));
            }
            // Records already received come first; then the socket's.
            let before = buf.filled().len();
            let progress = SCRATCH.with(|scratch| -> Poll<io::Result<bool>> {
                let mut scratch = scratch.borrow_mut();
                scratch.clear();
                scratch.extend_from_slice(&std::mem::take(&mut this.received));
                let kept = scratch.len();
                let whole = matches!(whole_record(&scratch), Ok(Some(_)));
                let mut got_eof = false;
                if !whole {
                    scratch.reserve(2 * (HEADER + MAX_BODY));
                    let mut room = ReadBuf::uninit(scratch.spare_capacity_mut());
                    match Pin::new(&mut this.tcp).poll_read(cx, &mut room) {
                        Poll::Pending => {
                            this.received = scratch[..].to_vec();
                            return Poll::Pending;
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(())) => {
                            let n = room.filled().len();
                            got_eof = n == 0;
                            // SAFETY: the read initialised the first `n`
                            // bytes of the spare capacity.
                            unsafe { scratch.set_len(kept + n) };
                        }
                    }
                }
                let used = this.open_records(&mut scratch, buf)?;
                if used < scratch.len() {
                    this.received = scratch[used..].to_vec();
                }
                if got_eof {
                    // TCP closed, with or without close_notify: the end of
                    // the client's direction, as mod_ssl takes it.
                    this.read_closed = true;
                }
                Poll::Ready(Ok(buf.filled().len() > before))
            });
            match ready!(progress) {
                Ok(true) => return Poll::Ready(Ok(())),
                Ok(false) => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Sealed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Err(ended()));
        }
        ready!(this.poll_unsent(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Seal only what the socket can take now: sealed bytes must go out.
        ready!(this.tcp.poll_write_ready(cx))?;
        let n = data.len().min(MAX_PLAIN);
        let sent = SCRATCH.with(|scratch| {
            let mut out = scratch.borrow_mut();
            out.clear();
            this.live.update_keys_if_due(&mut out)?;
            this.live.seal(APPLICATION_DATA, &data[..n], &mut out);
            this.send(&out)
        });
        Poll::Ready(sent.map(|()| n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_unsent(cx))?;
        if this.live.session.owe_update && !this.failed {
            this.answer_key_update()?;
            ready!(this.poll_unsent(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_unsent(cx))?;
        if !this.close_sent {
            this.close_sent = true;
            let mut record = Vec::new();
            this.live.seal(ALERT, &[1, CLOSE_NOTIFY], &mut record);
            this.send(&record)?;
            ready!(this.poll_unsent(cx))?;
        }
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

impl AsTcp for Sealed {
    fn as_tcp(&self) -> Option<&TcpStream> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use std::sync::{Arc, Mutex};

    /// Traffic secrets as rustls logs them.
    #[derive(Default, Debug)]
    struct Secrets(Mutex<Vec<(String, Vec<u8>)>>);

    impl rustls::KeyLog for Secrets {
        fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
            self.0
                .lock()
                .unwrap()
                .push((label.to_string(), secret.to_vec()));
        }
    }

    impl Secrets {
        fn get(&self, label: &str) -> Vec<u8> {
            let all = self.0.lock().unwrap();
            all.iter()
                .find(|(l, _)| l == label)
                .map(|(_, s)| s.clone())
                .unwrap_or_else(|| panic!("{label} logged"))
        }
    }

    fn suites(name: rustls::CipherSuite) -> rustls::crypto::CryptoProvider {
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites.retain(|s| s.suite() == name);
        provider
    }

    /// A rustls client and server in memory, their handshake done, and the
    /// server's session taken out as a parked tunnel takes it.
    fn pair(name: rustls::CipherSuite) -> (rustls::ClientConnection, Live) {
        let cert = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let der = CertificateDer::from(cert.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
        let secrets = Arc::new(Secrets::default());
        let mut server_config = rustls::ServerConfig::builder_with_provider(Arc::new(suites(name)))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        server_config.key_log = secrets.clone();
        server_config.enable_secret_extraction = true;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(suites(name)))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut client = rustls::ClientConnection::new(
            Arc::new(client_config),
            ServerName::try_from("a.test").unwrap(),
        )
        .unwrap();
        let mut server = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
        for _ in 0..10 {
            let mut bytes = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut bytes).unwrap();
            }
            if !bytes.is_empty() {
                server.read_tls(&mut &bytes[..]).unwrap();
                server.process_new_packets().unwrap();
            }
            let mut bytes = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut bytes).unwrap();
            }
            if !bytes.is_empty() {
                client.read_tls(&mut &bytes[..]).unwrap();
                client.process_new_packets().unwrap();
            }
        }
        assert!(!client.is_handshaking() && !server.is_handshaking());
        let suite = Suite::of(server.negotiated_cipher_suite().unwrap().suite()).unwrap();
        let extracted = server.dangerous_extract_secrets().unwrap();
        let (tx_seq, tx) = extracted.tx;
        let (rx_seq, rx) = extracted.rx;
        let tx_dir = Direction::from_secret(suite, &secrets.get("SERVER_TRAFFIC_SECRET_0"), tx_seq);
        let rx_dir = Direction::from_secret(suite, &secrets.get("CLIENT_TRAFFIC_SECRET_0"), rx_seq);
        // What rustls derived is what wsgate derives.
        for (dir, extracted) in [(&tx_dir, tx), (&rx_dir, rx)] {
            let (key, iv) = match extracted {
                rustls::ConnectionTrafficSecrets::Aes128Gcm { key, iv }
                | rustls::ConnectionTrafficSecrets::Aes256Gcm { key, iv }
                | rustls::ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (key, iv),
                _ => panic!("unexpected suite"),
            };
            assert!(dir.uses(suite, key.as_ref(), iv.as_ref()), "{suite:?}");
        }
        let live = Live::new(Box::new(Session::new(suite, tx_dir, rx_dir))).unwrap();
        (client, live)
    }

    /// What the client sends, opened by wsgate: application data, in order.
    fn receive(live: &mut Live, client: &mut rustls::ClientConnection) -> (Vec<u8>, Vec<Opened>) {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        let (mut data, mut kinds, mut at) = (Vec::new(), Vec::new(), 0);
        while let Ok(Some(len)) = whole_record(&wire[at..]) {
            let record = &mut wire[at..at + len];
            match live.open(record) {
                Ok(Opened::Data(n)) => {
                    data.extend_from_slice(&record[HEADER..HEADER + n]);
                    kinds.push(Opened::Data(n));
                }
                Ok(other) => kinds.push(other),
                Err(Fatal(_, why)) => panic!("{why}"),
            }
            at += len;
        }
        assert_eq!(at, wire.len(), "whole records");
        (data, kinds)
    }

    /// What wsgate sends, read by the client.
    fn deliver(client: &mut rustls::ClientConnection, wire: &[u8]) -> Vec<u8> {
        use std::io::Read;
        let (mut rest, mut got) = (wire, Vec::new());
        while !rest.is_empty() {
            client.read_tls(&mut rest).unwrap();
            client.process_new_packets().unwrap();
            let _ = client.reader().read_to_end(&mut got);
        }
        got
    }

    #[test]
    fn records_go_both_ways_with_rustls_in_every_suite() {
        use std::io::Write;
        for name in [
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        ] {
            let (mut client, mut live) = pair(name);
            client.writer().write_all(b"from the client").unwrap();
            client.writer().write_all(&[7u8; 40_000]).unwrap();
            let (data, _) = receive(&mut live, &mut client);
            assert_eq!(&data[..15], b"from the client");
            assert_eq!(data.len(), 15 + 40_000);
            let mut wire = Vec::new();
            live.seal(APPLICATION_DATA, b"from wsgate", &mut wire);
            live.seal(APPLICATION_DATA, &[9u8; MAX_PLAIN], &mut wire);
            let got = deliver(&mut client, &wire);
            assert_eq!(&got[..11], b"from wsgate");
            assert_eq!(got.len(), 11 + MAX_PLAIN, "{name:?}");
        }
    }

    #[test]
    fn a_key_update_the_client_asks_for_is_followed_and_answered() {
        use std::io::Write;
        let (mut client, mut live) = pair(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384);
        client.refresh_traffic_keys().unwrap();
        client.writer().write_all(b"new keys").unwrap();
        let (data, kinds) = receive(&mut live, &mut client);
        assert_eq!(data, b"new keys");
        assert_eq!(kinds, [Opened::Nothing, Opened::Data(8)]);
        assert!(live.session.owe_update, "update_requested");
        let mut wire = Vec::new();
        live.update_keys_if_due(&mut wire).unwrap();
        live.seal(APPLICATION_DATA, b"answered", &mut wire);
        assert_eq!(live.session.tx.seq, 1, "the new keys' first record");
        assert_eq!(deliver(&mut client, &wire), b"answered");
        // And again: each update derives from the one before.
        client.refresh_traffic_keys().unwrap();
        client.writer().write_all(b"twice").unwrap();
        assert_eq!(receive(&mut live, &mut client).0, b"twice");
    }

    #[test]
    fn keys_are_updated_before_they_wear_out() {
        let (mut client, mut live) = pair(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        // Pretend the key protected its share of records: the client counts
        // its own, so the records in between are skipped on both sides.
        let mut wire = Vec::new();
        live.seal(APPLICATION_DATA, b"before", &mut wire);
        assert_eq!(deliver(&mut client, &wire), b"before");
        let old = live.session.tx.clone();
        live.session.tx.seq = UPDATE_AT;
        let mut wire = Vec::new();
        live.update_keys_if_due(&mut wire).unwrap();
        assert!(!live
            .session
            .tx
            .uses(Suite::Aes128Gcm, &old.key[..16], &old.iv));
        assert_eq!(live.session.tx.seq, 0);
        // The client cannot read a record numbered from where it never
        // was, so the check is the KeyUpdate's form and the new key itself.
        assert_eq!(wire.len(), HEADER + 5 + 1 + TAG);
        let next = old.next(Suite::Aes128Gcm).unwrap();
        assert!(next.uses(
            Suite::Aes128Gcm,
            &live.session.tx.key[..16],
            &live.session.tx.iv
        ));
    }

    /// A client's side of `live`'s session, to send what rustls's client
    /// would not.
    fn mirror(live: &Live) -> Live {
        let s = &live.session;
        Live::new(Box::new(Session::new(s.suite, s.rx.clone(), s.tx.clone()))).unwrap()
    }

    fn one(live: &mut Live, typ: u8, content: &[u8], from: &mut Live) -> Result<Opened, u8> {
        let mut wire = Vec::new();
        from.seal(typ, content, &mut wire);
        live.open(&mut wire)
            .map_err(|Fatal(alert, _)| alert.unwrap_or(0))
    }

    #[test]
    fn records_without_data_and_malformed_key_updates_are_refused() {
        let (_client, mut live) = pair(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        let mut client = mirror(&live);
        // user_canceled is ignored, up to a point; data resets the count.
        for _ in 0..MAX_QUIET_RECORDS {
            assert_eq!(
                one(&mut live, ALERT, &[1, USER_CANCELED], &mut client),
                Ok(Opened::Nothing)
            );
        }
        assert_eq!(
            one(&mut live, APPLICATION_DATA, b"d", &mut client),
            Ok(Opened::Data(1))
        );
        for _ in 0..MAX_QUIET_RECORDS {
            assert_eq!(
                one(&mut live, ALERT, &[1, USER_CANCELED], &mut client),
                Ok(Opened::Nothing)
            );
        }
        assert_eq!(
            one(&mut live, ALERT, &[1, USER_CANCELED], &mut client),
            Err(UNEXPECTED_MESSAGE)
        );

        let (_client, mut live) = pair(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        let mut client = mirror(&live);
        assert_eq!(
            one(&mut live, HANDSHAKE, &[], &mut client),
            Err(UNEXPECTED_MESSAGE)
        );
        let (_client, mut live) = pair(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        let mut client = mirror(&live);
        let two = [KEY_UPDATE, 0, 0, 1, 0, KEY_UPDATE, 0, 0, 1, 0];
        assert_eq!(
            one(&mut live, HANDSHAKE, &two, &mut client),
            Err(UNEXPECTED_MESSAGE)
        );
        let (_client, mut live) = pair(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        let mut client = mirror(&live);
        let bad = [KEY_UPDATE, 0, 0, 1, 2];
        assert_eq!(
            one(&mut live, HANDSHAKE, &bad, &mut client),
            Err(DECODE_ERROR)
        );
        let (_client, mut live) = pair(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        let mut client = mirror(&live);
        let ticket = [4, 0, 0, 1, 0];
        assert_eq!(
            one(&mut live, HANDSHAKE, &ticket, &mut client),
            Err(UNEXPECTED_MESSAGE)
        );
    }

    #[test]
    fn close_notify_ends_the_clients_direction_and_bad_records_are_refused() {
        use std::io::Write;
        let (mut client, mut live) = pair(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        client.writer().write_all(b"x").unwrap();
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        // A flipped bit fails the check.
        let last = wire.len() - 1;
        wire[last] ^= 1;
        assert!(matches!(
            live.open(&mut wire),
            Err(Fatal(Some(BAD_RECORD_MAC), _))
        ));
        // A record claiming more than TLS allows is refused before it is read.
        assert!(whole_record(&[23, 3, 3, 0x48, 0x01]).is_err());
        // An unprotected record after the handshake is refused.
        let mut plain = [21u8, 3, 3, 0, 2, 1, 0];
        assert!(matches!(
            live.open(&mut plain),
            Err(Fatal(Some(UNEXPECTED_MESSAGE), _))
        ));
        let (mut client, mut live) = pair(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        client.send_close_notify();
        assert_eq!(receive(&mut live, &mut client).1, [Opened::Closed]);
    }
}
