//! The client side of one request: where its body comes from and where
//! its answer goes. Forwarding (`forward`, `request`) is written against
//! [`Downstream`], so that the same routing, rules, balancing and backend
//! I/O serve any wire format toward the client: HTTP/1 writes heads and
//! bodies as bytes on the connection ([`Conn`]); HTTP/2 sends them as
//! frames on a stream.

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::body::{BodyError, BodyReader};
use super::conn::Conn;
use super::headers::{self, BodyHeader, ClientResponse};
use crate::http::body::{self, Encoding};
use crate::http::write::LocalAnswer;
use crate::http::ResponseHead;

/// Where a request's body comes from and its answer goes.
pub trait Downstream: Send {
    /// The next piece of the request body; `None` once it has ended.
    fn body_piece(
        &mut self,
        reader: &mut BodyReader,
        timeout: Duration,
    ) -> impl Future<Output = Result<Option<Bytes>, BodyError>> + Send;

    /// An answer wsgate makes itself.
    fn send_answer(
        &mut self,
        answer: &LocalAnswer,
        timeout: Duration,
    ) -> impl Future<Output = io::Result<()>> + Send;

    /// A backend's interim answer (100, 103…), relayed.
    fn send_interim(
        &mut self,
        resp: &ResponseHead,
        timeout: Duration,
    ) -> impl Future<Output = io::Result<()>> + Send;

    /// A final answer's head, with the first bytes of its body when they
    /// came with it (sent together).
    fn send_head(
        &mut self,
        resp: &ResponseHead,
        c: &ClientResponse<'_>,
        first: Option<Bytes>,
        timeout: Duration,
    ) -> impl Future<Output = io::Result<()>> + Send;

    /// A piece of the answer's body, framed as `encoding` says.
    fn send_piece(
        &mut self,
        piece: &Bytes,
        encoding: Encoding,
        timeout: Duration,
    ) -> impl Future<Output = io::Result<()>> + Send;

    /// The end of the answer's body.
    fn finish(
        &mut self,
        encoding: Encoding,
        timeout: Duration,
    ) -> impl Future<Output = io::Result<()>> + Send;

    /// Bytes taken from the client and sent to it so far, heads included
    /// (mod_logio's counts); `(0, 0)` where the wire format cannot say.
    fn traffic(&self) -> (u64, u64) {
        (0, 0)
    }

    /// A write to the client failed (mod_log_config's `%X` `X`).
    fn aborted(&self) -> bool {
        false
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Downstream for Conn<S> {
    async fn body_piece(
        &mut self,
        reader: &mut BodyReader,
        timeout: Duration,
    ) -> Result<Option<Bytes>, BodyError> {
        reader.next(self, timeout).await
    }

    async fn send_answer(&mut self, answer: &LocalAnswer, timeout: Duration) -> io::Result<()> {
        let bytes = match self.keep_alive.fields() {
            Some(more) => answer.to_h1_with(&more),
            None => answer.to_h1(),
        };
        self.write_all(&bytes, timeout).await
    }

    async fn send_interim(&mut self, resp: &ResponseHead, timeout: Duration) -> io::Result<()> {
        let bytes = headers::client_response(
            resp,
            &ClientResponse {
                body: BodyHeader::None,
                close: false,
                upgrade: None,
                public_host: "",
                reverse: &[],
                banner: "",
            },
        );
        self.write_all(&bytes, timeout).await
    }

    async fn send_head(
        &mut self,
        resp: &ResponseHead,
        c: &ClientResponse<'_>,
        first: Option<Bytes>,
        timeout: Duration,
    ) -> io::Result<()> {
        let mut bytes = headers::client_response(resp, c);
        if let (None, false, Some(more)) = (c.upgrade, c.close, self.keep_alive.fields()) {
            // Before the blank line that ends the head.
            bytes.truncate(bytes.len() - 2);
            bytes.extend_from_slice(&more);
            bytes.extend_from_slice(b"\r\n");
        }
        if let Some(first) = first {
            bytes.extend_from_slice(&first);
        }
        self.write_all(&bytes, timeout).await
    }

    async fn send_piece(
        &mut self,
        piece: &Bytes,
        encoding: Encoding,
        timeout: Duration,
    ) -> io::Result<()> {
        if encoding == Encoding::Chunked {
            let mut out = Vec::with_capacity(piece.len() + 16);
            body::frame(encoding, piece, &mut out);
            self.write_all(&out, timeout).await
        } else {
            self.write_all(piece, timeout).await
        }
    }

    fn traffic(&self) -> (u64, u64) {
        Conn::traffic(self)
    }

    fn aborted(&self) -> bool {
        self.write_failed
    }

    async fn finish(&mut self, encoding: Encoding, timeout: Duration) -> io::Result<()> {
        let end = body::end(encoding);
        if end.is_empty() {
            return Ok(());
        }
        self.write_all(end, timeout).await
    }
}
