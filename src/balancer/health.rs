//! mod_proxy_hcheck: background checks of balancer members, never on the
//! request path. A member that fails `hcfails` checks in a row stops
//! receiving traffic; `hcpasses` good checks in a row bring it back (S117–
//! S121; Apache counts failures cumulatively, the manual says "in a row",
//! wsgate does what the manual says).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::{Balancer, Member};
use crate::config::values::IntOp;
use crate::proxy::backend::{self, ConnectSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Tcp,
    Options,
    Head,
    Get,
}

/// A member's health check.
#[derive(Debug, Clone)]
pub struct Check {
    pub method: Method,
    pub http11: bool,
    pub interval: Duration,
    pub passes: u32,
    pub fails: u32,
    pub uri: String,
    pub expr: Option<Arc<StatusExpr>>,
}

impl Check {
    pub fn new(method: Method, http11: bool) -> Check {
        Check {
            method,
            http11,
            interval: Duration::from_secs(30),
            passes: 1,
            fails: 1,
            uri: String::new(),
            expr: None,
        }
    }
}

/// The subset of ap_expr `ProxyHCExpr` takes here: conditions on
/// `%{REQUEST_STATUS}` joined with `&&`, `||`, `!` and parentheses.
#[derive(Debug)]
pub enum StatusExpr {
    Compare(IntOp, i64),
    Matches(Regex, bool),
    In(Vec<i64>),
    Not(Box<StatusExpr>),
    And(Box<StatusExpr>, Box<StatusExpr>),
    Or(Box<StatusExpr>, Box<StatusExpr>),
}

impl StatusExpr {
    pub fn eval(&self, status: u16) -> bool {
        let s = i64::from(status);
        match self {
            StatusExpr::Compare(op, n) => op.holds(s, *n),
            StatusExpr::Matches(re, want) => re.is_match(&status.to_string()) == *want,
            StatusExpr::In(list) => list.contains(&s),
            StatusExpr::Not(e) => !e.eval(status),
            StatusExpr::And(a, b) => a.eval(status) && b.eval(status),
            StatusExpr::Or(a, b) => a.eval(status) || b.eval(status),
        }
    }

    /// Parses e.g. `%{REQUEST_STATUS} =~ /^[23]/ && %{REQUEST_STATUS} != 204`.
    pub fn parse(text: &str) -> Result<StatusExpr, String> {
        let tokens = tokenize(text)?;
        let mut p = Parser { tokens, pos: 0 };
        let e = p.or()?;
        if p.pos != p.tokens.len() {
            return Err(format!("unexpected '{}'", p.tokens[p.pos]));
        }
        Ok(e)
    }
}

fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '%' && chars.get(i + 1) == Some(&'{') {
            let end = chars[i..]
                .iter()
                .position(|&d| d == '}')
                .ok_or("unterminated %{…}")?;
            out.push(chars[i..=i + end].iter().collect());
            i += end + 1;
        } else if c == '/' {
            let end = chars[i + 1..]
                .iter()
                .position(|&d| d == '/')
                .ok_or("unterminated /regex/")?;
            out.push(chars[i..i + 2 + end].iter().collect());
            i += 2 + end;
        } else if c == '\'' || c == '"' {
            let end = chars[i + 1..]
                .iter()
                .position(|&d| d == c)
                .ok_or("unterminated string")?;
            out.push(chars[i + 1..i + 1 + end].iter().collect());
            i += 2 + end;
        } else if "(){},!".contains(c)
            && !(c == '!' && chars.get(i + 1).is_some_and(|d| *d == '=' || *d == '~'))
        {
            out.push(c.to_string());
            i += 1;
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !"(){},".contains(chars[i]) {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<String>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(String::as_str)
    }

    fn next(&mut self) -> Result<String, String> {
        let t = self
            .tokens
            .get(self.pos)
            .cloned()
            .ok_or("unexpected end of expression")?;
        self.pos += 1;
        Ok(t)
    }

    fn or(&mut self) -> Result<StatusExpr, String> {
        let mut left = self.and()?;
        while self.peek() == Some("||") {
            self.pos += 1;
            left = StatusExpr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<StatusExpr, String> {
        let mut left = self.unary()?;
        while self.peek() == Some("&&") {
            self.pos += 1;
            left = StatusExpr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<StatusExpr, String> {
        match self.peek() {
            Some("!") => {
                self.pos += 1;
                Ok(StatusExpr::Not(Box::new(self.unary()?)))
            }
            Some("(") => {
                self.pos += 1;
                let e = self.or()?;
                if self.next()? != ")" {
                    return Err("missing ')'".into());
                }
                Ok(e)
            }
            _ => self.comparison(),
        }
    }

    fn comparison(&mut self) -> Result<StatusExpr, String> {
        let subject = self.next()?;
        if subject != "%{REQUEST_STATUS}" {
            return Err(format!(
                "'{subject}': only %{{REQUEST_STATUS}} can be tested here"
            ));
        }
        let op = self.next()?;
        let number = |t: String| {
            t.parse::<i64>()
                .map_err(|_| format!("'{t}' is not a number"))
        };
        Ok(match op.as_str() {
            "=~" | "!~" => {
                let re = self.next()?;
                let body = re
                    .strip_prefix('/')
                    .and_then(|r| r.strip_suffix('/'))
                    .ok_or("expected /regex/")?;
                StatusExpr::Matches(Regex::new(body).map_err(|e| e.to_string())?, op == "=~")
            }
            "in" => {
                if self.next()? != "{" {
                    return Err("expected '{' after in".into());
                }
                let mut list = Vec::new();
                loop {
                    let t = self.next()?;
                    match t.as_str() {
                        "}" => break,
                        "," => {}
                        _ => list.push(number(t)?),
                    }
                }
                StatusExpr::In(list)
            }
            _ => {
                let cmp = match op.as_str() {
                    "==" | "=" => IntOp::Eq,
                    "!=" => IntOp::Ne,
                    "<" => IntOp::Lt,
                    "<=" => IntOp::Le,
                    ">" => IntOp::Gt,
                    ">=" => IntOp::Ge,
                    other => IntOp::from_test(other)
                        .ok_or_else(|| format!("operator '{other}' is not supported"))?,
                };
                StatusExpr::Compare(cmp, number(self.next()?)?)
            }
        })
    }
}

/// Starts a checker for every member that has a health check.
pub fn start(
    balancers: &[Arc<Balancer>],
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for b in balancers {
        for i in 0..b.members.len() {
            if b.members[i].health.is_some() {
                tasks.push(tokio::spawn(run(b.clone(), i, tls.clone())));
            }
        }
    }
    tasks
}

async fn run(balancer: Arc<Balancer>, index: usize, tls: Option<Arc<rustls::ClientConfig>>) {
    let member = &balancer.members[index];
    let Some(check) = &member.health else { return };
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let ok = probe(member, check, tls.as_ref()).await;
        record(&balancer.name, member, check, ok);
    }
}

fn record(balancer: &str, member: &Member, check: &Check, ok: bool) {
    let s = &member.state;
    if ok {
        s.hc_fails.store(0, Ordering::Relaxed);
        let passes = s.hc_passes.fetch_add(1, Ordering::Relaxed) + 1;
        if s.hc_failed.load(Ordering::Relaxed) && passes >= check.passes {
            s.hc_failed.store(false, Ordering::Relaxed);
            s.clear_error();
            tracing::warn!(
                "{balancer}: member {} passed its health checks: back in use",
                member.worker.name
            );
        }
    } else {
        s.hc_passes.store(0, Ordering::Relaxed);
        let fails = s.hc_fails.fetch_add(1, Ordering::Relaxed) + 1;
        if !s.hc_failed.load(Ordering::Relaxed) && fails >= check.fails {
            s.hc_failed.store(true, Ordering::Relaxed);
            tracing::error!(
                "{balancer}: member {} failed {fails} health checks: out of use",
                member.worker.name
            );
        }
    }
}

/// One check: connect, and for the HTTP methods send a bare request and
/// read the status line (S119, S120).
async fn probe(member: &Member, check: &Check, tls: Option<&Arc<rustls::ClientConfig>>) -> bool {
    let url = &member.url;
    let timeout = member
        .worker
        .params
        .connection_timeout
        .unwrap_or(check.interval)
        .min(Duration::from_secs(10));
    let tls = match (url.scheme.is_tls(), tls) {
        (true, Some(config)) => match rustls::pki_types::ServerName::try_from(url.host.clone()) {
            Ok(name) => Some((config.clone(), name)),
            Err(_) => return false,
        },
        (true, None) => return false,
        (false, _) => None,
    };
    let spec = ConnectSpec {
        host: &url.host,
        addresses: &member.worker.addresses,
        port: url.port,
        tls,
        connect_timeout: timeout,
        keepalive: false,
    };
    let Ok(mut stream) = backend::connect(&spec).await else {
        return false;
    };
    let method = match check.method {
        Method::Tcp => return true,
        Method::Options => "OPTIONS",
        Method::Head => "HEAD",
        Method::Get => "GET",
    };
    let target = if check.method == Method::Options {
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
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        let mut buf = vec![0u8; 1024];
        let mut got = 0;
        while got < 12 {
            let n = stream.read(&mut buf[got..]).await?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Ok::<_, std::io::Error>(buf[..got].to_vec())
    };
    let Ok(Ok(head)) = tokio::time::timeout(timeout, exchange).await else {
        return false;
    };
    let status = std::str::from_utf8(head.get(9..12).unwrap_or(b""))
        .ok()
        .and_then(|s| s.parse::<u16>().ok());
    match (status, &check.expr) {
        (Some(s), Some(expr)) => expr.eval(s),
        (Some(s), None) => (200..400).contains(&s),
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_expressions() {
        let e =
            StatusExpr::parse("%{REQUEST_STATUS} =~ /^[23]/ && %{REQUEST_STATUS} != 204").unwrap();
        assert!(e.eval(200));
        assert!(!e.eval(204));
        assert!(!e.eval(503));
        let e = StatusExpr::parse(
            "!(%{REQUEST_STATUS} -ge 500) || %{REQUEST_STATUS} in { 503, '504' }",
        )
        .unwrap();
        assert!(e.eval(404));
        assert!(e.eval(503));
        assert!(!e.eval(500));
        assert!(StatusExpr::parse("%{HTTP_HOST} == 'x'").is_err());
        assert!(StatusExpr::parse("%{REQUEST_STATUS} <").is_err());
    }
}
