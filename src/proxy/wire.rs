//! A TLS client connection's socket as rustls sees it, with what a quiet
//! TLS 1.3 session needs to leave rustls for the park table (`record`):
//! where the client's records begin and end, so that a session is taken
//! out only between two records, and the session's traffic secrets, which
//! rustls gives to its `KeyLog` during the handshake and nowhere else.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use rustls::ServerConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::park::{Park, Parkable, Side};
use super::record::{Direction, Session, Suite};
use super::tunnel::AsTcp;

const CLIENT_SECRET: &str = "CLIENT_TRAFFIC_SECRET_0";
const SERVER_SECRET: &str = "SERVER_TRAFFIC_SECRET_0";

/// The application traffic secrets of one TLS 1.3 handshake.
#[derive(Default)]
pub struct Secrets {
    client: Vec<u8>,
    server: Vec<u8>,
}

impl Drop for Secrets {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.client.zeroize();
        self.server.zeroize();
    }
}

thread_local! {
    /// Secrets rustls logged on this thread since [`take_secrets`].
    static LOGGED: RefCell<Secrets> = RefCell::default();
}

/// rustls's `KeyLog`, keeping the secrets a session needs after its
/// handshake where the handshake that derived them can take them: rustls
/// derives them inside a call made by that handshake's task, on its thread.
#[derive(Debug)]
pub struct CatchSecrets;

impl rustls::KeyLog for CatchSecrets {
    fn will_log(&self, label: &str) -> bool {
        label == CLIENT_SECRET || label == SERVER_SECRET
    }

    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        LOGGED.with(|l| {
            let mut l = l.borrow_mut();
            match label {
                CLIENT_SECRET => l.client = secret.to_vec(),
                SERVER_SECRET => l.server = secret.to_vec(),
                _ => {}
            }
        });
    }
}

/// The secrets logged on this thread since the last call; call it before
/// and after each step of a handshake.
pub fn take_secrets() -> Option<Box<Secrets>> {
    let s = LOGGED.with(|l| std::mem::take(&mut *l.borrow_mut()));
    (!s.client.is_empty() && !s.server.is_empty()).then(|| Box::new(s))
}

/// Where the bytes read so far stand in the client's record stream.
#[derive(Default)]
struct Records {
    header: [u8; 5],
    header_len: u8,
    body_left: u16,
}

impl Records {
    fn saw(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = bytes.len().min(self.body_left as usize);
                self.body_left -= n as u16;
                bytes = &bytes[n..];
                continue;
            }
            if let (0, [_, _, _, hi, lo, rest @ ..]) = (self.header_len, bytes) {
                // A whole header at once: the usual case.
                self.body_left = u16::from_be_bytes([*hi, *lo]);
                bytes = rest;
                continue;
            }
            self.header[self.header_len as usize] = bytes[0];
            self.header_len += 1;
            bytes = &bytes[1..];
            if self.header_len == 5 {
                self.header_len = 0;
                self.body_left = u16::from_be_bytes([self.header[3], self.header[4]]);
            }
        }
    }

    /// Every record read so far was read whole.
    fn between(&self) -> bool {
        self.header_len == 0 && self.body_left == 0
    }
}

/// The socket under a client's TLS session.
pub struct Wire {
    tcp: TcpStream,
    records: Records,
    secrets: Option<Box<Secrets>>,
}

impl Wire {
    pub fn new(tcp: TcpStream) -> Wire {
        Wire {
            tcp,
            records: Records::default(),
            secrets: None,
        }
    }

    /// The secrets of the handshake made on this socket.
    pub fn keep_secrets(&mut self, secrets: Option<Box<Secrets>>) {
        self.secrets = secrets;
    }
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.tcp).poll_read(cx, buf))?;
        this.records.saw(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Wire {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, b)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

impl AsTcp for TlsStream<Wire> {
    fn as_tcp(&self) -> Option<&TcpStream> {
        None
    }
}

/// The suite of a TLS 1.3 session whose secrets are known.
fn parkable_suite(wire: &Wire, conn: &ServerConnection) -> Option<Suite> {
    if conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return None;
    }
    let suite = Suite::of(conn.negotiated_cipher_suite()?.suite())?;
    let secrets = wire.secrets.as_ref()?;
    let len = suite.hash_len();
    (secrets.client.len() == len && secrets.server.len() == len).then_some(suite)
}

/// A direction of a session taken out of rustls: the keys rustls used,
/// with the secret they came from when it derives them (always, unless
/// the two disagree, which would leave the session unable to follow a
/// KeyUpdate but otherwise whole).
fn direction(
    suite: Suite,
    secret: &[u8],
    (seq, extracted): (u64, rustls::ConnectionTrafficSecrets),
) -> Option<Direction> {
    let (key, iv) = match &extracted {
        rustls::ConnectionTrafficSecrets::Aes128Gcm { key, iv }
        | rustls::ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        | rustls::ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (key, iv),
        _ => return None,
    };
    if let Some(d) = Direction::matching(suite, secret, key.as_ref(), iv.as_ref(), seq) {
        return Some(d);
    }
    tracing::warn!("TLS keys taken from rustls differ from those derived: KeyUpdate not followed");
    Direction::from_key(key.as_ref(), iv.as_ref(), seq)
}

/// The socket as `std::io::Write` that never waits: what it cannot take
/// now is `WouldBlock`.
struct NowOrNever<'a>(&'a TcpStream);

impl std::io::Write for NowOrNever<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.try_write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Parkable for TlsStream<Wire> {
    fn can_park(&self) -> bool {
        let (wire, conn) = self.get_ref();
        parkable_suite(wire, conn).is_some()
    }

    /// Only between two records, with nothing read and not yet taken and
    /// nothing to send: then the session is its keys and sequence numbers.
    fn into_parked(mut self) -> Park<Self> {
        let (wire, conn) = self.get_mut();
        let Some(suite) = parkable_suite(wire, conn) else {
            return Park::NotNow(self);
        };
        let unread = match conn.process_new_packets() {
            Ok(s) => s.plaintext_bytes_to_read() > 0 || s.peer_has_closed(),
            Err(e) => return Park::Failed(io::Error::other(e)),
        };
        // rustls answers a client's KeyUpdate with the next record it
        // sends, having moved to its new keys already: that answer goes out
        // now, or the keys taken out would be ones the client never heard
        // of. (Writing nothing moves it to the records to send.)
        let _ = std::io::Write::write(&mut conn.writer(), &[]);
        while conn.wants_write() {
            match conn.write_tls(&mut NowOrNever(&wire.tcp)) {
                Ok(n) if n > 0 => {}
                _ => return Park::NotNow(self),
            }
        }
        if !wire.records.between() || unread {
            return Park::NotNow(self);
        }
        let (mut wire, conn) = self.into_inner();
        let extracted = match conn.dangerous_extract_secrets() {
            Ok(e) => e,
            Err(e) => return Park::Failed(io::Error::other(e)),
        };
        let Some(secrets) = wire.secrets.take() else {
            return Park::Failed(io::Error::other("no TLS secrets"));
        };
        let tx = direction(suite, &secrets.server, extracted.tx);
        let rx = direction(suite, &secrets.client, extracted.rx);
        let (Some(tx), Some(rx)) = (tx, rx) else {
            return Park::Failed(io::Error::other("TLS keys of an unknown kind"));
        };
        match wire.tcp.into_std() {
            Ok(tcp) => Park::Out(Side {
                tcp,
                tls: Some(Box::new(Session::new(suite, tx, rx))),
            }),
            Err(e) => Park::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_boundaries_are_followed_across_any_split() {
        // Two records (3 and 0 body bytes) and the start of a third.
        let stream = [23, 3, 3, 0, 3, 1, 2, 3, 21, 3, 3, 0, 0, 23, 3];
        for split in 0..stream.len() {
            let mut r = Records::default();
            r.saw(&stream[..split]);
            r.saw(&stream[split..]);
            assert!(!r.between(), "in the third record's header ({split})");
        }
        let mut r = Records::default();
        for (i, b) in stream[..13].iter().enumerate() {
            r.saw(&[*b]);
            assert_eq!(r.between(), i == 7 || i == 12, "after byte {i}");
        }
    }
}
