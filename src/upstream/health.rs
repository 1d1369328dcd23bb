//! mod_proxy_hcheck: background checks of balancer members, each member's
//! in a task of its own, never on the request path. A member that fails
//! `hcfails` checks in a row stops receiving traffic; `hcpasses` good checks
//! in a row bring it back (S117–S121; Apache counts failures cumulatively,
//! the manual says "in a row", wsgate does what the manual says).
//!
//! An answer is read with the proxy's own HTTP/1 parser: a status line that
//! is not HTTP/1.x, a malformed header or a body cut short fails the check,
//! as in Apache's `hc_read_headers`.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::connect::{self, ConnectSpec};
use super::runtime::Generation;
use crate::balancer::{self, HealthChange};
use crate::config::model::balancer::{BalancerIdx, HcMethod, HealthCheck, Member};
use crate::config::WorkerRef;
use crate::http::body::{response_framing, Decoder};
use crate::http::h1::{head_end, parse_response, RESPONSE_FIELD_SIZE};

/// Starts a checker for every member of `generation` that has a health
/// check; they run until aborted (when another configuration replaces it).
pub fn start(generation: &Arc<Generation>) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (b, balancer) in generation.config.balancers.iter().enumerate() {
        for (m, member) in balancer.members.iter().enumerate() {
            if member.health.is_some() {
                tasks.push(tokio::spawn(run(generation.clone(), BalancerIdx(b), m)));
            }
        }
    }
    tasks
}

async fn run(generation: Arc<Generation>, b: BalancerIdx, index: usize) {
    let balancer = generation.config.balancer(b);
    let member = &balancer.members[index];
    let Some(check) = &member.health else { return };
    let state = &generation.balancer(b).members[index];
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let result = probe(&generation, member, check).await;
        let worker = &generation.config.worker(member.worker).name;
        if let Err(why) = &result {
            tracing::debug!("{}: health check of {worker} failed: {why}", balancer.name);
        }
        match balancer::record_check(check, state, result.is_ok()) {
            Some(HealthChange::Out { fails }) => tracing::error!(
                "{}: member {worker} failed {fails} health checks: out of use",
                balancer.name
            ),
            Some(HealthChange::Back) => tracing::warn!(
                "{}: member {worker} passed its health checks: back in use",
                balancer.name
            ),
            None => {}
        }
    }
}

/// One check: connect, and for the HTTP methods send a bare request and
/// read the answer (S119, S120). `Err` says why it failed.
async fn probe(
    generation: &Generation,
    member: &Member,
    check: &HealthCheck,
) -> Result<(), String> {
    let url = &member.url;
    let worker = generation.worker(WorkerRef::Configured(member.worker), url);
    let timeout = worker
        .params
        .connection_timeout
        .unwrap_or(check.interval)
        .min(Duration::from_secs(10));
    let tls = if url.scheme.is_tls() {
        let client = generation
            .tls(check.ssl)
            .ok_or("SSLProxyEngine is not on for the server whose settings this check uses")?;
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|_| format!("'{}' is not a valid TLS server name", url.host))?;
        Some((client.clone(), name))
    } else {
        None
    };
    let spec = ConnectSpec {
        host: &url.host,
        addresses: &worker.state.addresses,
        port: url.port,
        tls,
        connect_timeout: timeout,
        keepalive: false,
        liveness: Default::default(),
        network: &generation.network,
        source: None,
    };
    let mut stream = connect::connect(&spec).await.map_err(|e| e.to_string())?;
    let method = match check.method {
        HcMethod::Tcp => return Ok(()),
        HcMethod::Options => "OPTIONS",
        HcMethod::Head => "HEAD",
        HcMethod::Get => "GET",
    };
    let request = request(check, method, url);
    let status = tokio::time::timeout(timeout, exchange(&mut stream, &request, method))
        .await
        .map_err(|_| "no answer in time".to_string())??;
    if balancer::check_passes(check, status) {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// The check's request: `hcuri` below the member's path (`*` for OPTIONS).
fn request(check: &HealthCheck, method: &str, url: &crate::http::TargetUrl) -> String {
    let target = if check.method == HcMethod::Options {
        "*".to_string()
    } else {
        let base = url.path.trim_end_matches('/');
        let uri = check.uri.trim_start_matches('/');
        format!("{base}/{uri}")
    };
    let version = if check.http11 { "HTTP/1.1" } else { "HTTP/1.0" };
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let mut request = format!(
        "{method} {target} {version}\r\nHost: {host}:{}\r\n",
        url.port
    );
    if check.http11 {
        request.push_str("Connection: close\r\n");
    }
    request.push_str("\r\n");
    request
}

/// Sends the request and reads the answer: its head, and for a GET its
/// body to the end. The status of the answer.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &str,
    method: &str,
) -> Result<u16, String> {
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(1024);
    let max = RESPONSE_FIELD_SIZE * 101;
    let end = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        if buf.len() > max {
            return Err("answer head too large".into());
        }
        if read(stream, &mut buf).await? == 0 {
            return Err("closed before a whole head".into());
        }
    };
    let head = parse_response(&buf.split_to(end).freeze()).map_err(|e| format!("{e:?}"))?;
    if method != "GET" {
        return Ok(head.status);
    }
    let bodyless = head.status == 204 || head.status == 304 || head.status < 200;
    let framing = response_framing(&head.headers, bodyless).ok_or("bad Content-Length")?;
    let mut body = Decoder::new(framing);
    loop {
        while body
            .decode(&mut buf)
            .map_err(|e| format!("{e:?}"))?
            .is_some()
        {}
        if body.is_done() {
            return Ok(head.status);
        }
        if read(stream, &mut buf).await? == 0 {
            return if body.at_close() {
                Ok(head.status)
            } else {
                Err("body cut short".into())
            };
        }
    }
}

async fn read<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> Result<usize, String> {
    buf.reserve(4096);
    stream.read_buf(buf).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(bytes: &'static [u8], method: &str) -> Result<u16, String> {
        let (mut ours, mut theirs) = tokio::io::duplex(1 << 16);
        let backend = tokio::spawn(async move {
            let mut req = vec![0u8; 1024];
            let _ = theirs.read(&mut req).await;
            theirs.write_all(bytes).await.expect("write the answer");
        });
        let got = exchange(&mut ours, "GET / HTTP/1.0\r\n\r\n", method).await;
        backend.await.expect("the backend task did not panic");
        got
    }

    #[tokio::test]
    async fn answers_are_read_with_the_proxy_parser() {
        assert_eq!(
            answer(b"HTTP/1.1 204 No Content\r\n\r\n", "HEAD").await,
            Ok(204)
        );
        assert_eq!(
            answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "GET").await,
            Ok(200)
        );
        assert_eq!(
            answer(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                "GET"
            )
            .await,
            Ok(200)
        );
        assert_eq!(
            answer(b"HTTP/1.0 503 Busy\r\n\r\nbody until close", "GET").await,
            Ok(503)
        );
    }

    #[tokio::test]
    async fn what_is_not_an_http1_answer_fails() {
        // Bytes 9..12 hold "200", but this is no status line.
        assert!(answer(b"XTTP/1.1 200 OK\r\n\r\n", "HEAD").await.is_err());
        assert!(answer(b"HTTP/2.0 200 OK\r\n\r\n", "HEAD").await.is_err());
        assert!(answer(b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", "HEAD")
            .await
            .is_err());
        assert!(answer(b"HTTP/1.1 200", "HEAD").await.is_err());
        assert!(
            answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "GET")
                .await
                .is_err(),
            "a GET's body cut short"
        );
    }
}
