//! Access logs (mod_log_config, mod_logio): where lines go, when a line is
//! written, and what it holds — a `LogFormat` string read into pieces.

use super::headers::expr::Cond;
use crate::config::error::Origin;

/// One `CustomLog` or `TransferLog` line (or `GlobalLog`).
#[derive(Debug, Clone)]
pub struct AccessLog {
    pub target: LogTarget,
    pub format: Format,
    pub when: LogCondition,
    pub origin: Origin,
}

/// Where a log's lines are written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LogTarget {
    /// A file, opened for appending (relative paths under `ServerRoot`).
    File(std::path::PathBuf),
    /// `"|program args"` or `"||program args"`: run directly, its standard
    /// input fed the lines; `"|$command"`: run by `/bin/sh -c`.
    Pipe { command: String, shell: bool },
}

impl std::fmt::Display for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogTarget::File(p) => write!(f, "{}", p.display()),
            LogTarget::Pipe { command, shell } => {
                write!(f, "|{}{command}", if *shell { "$" } else { "" })
            }
        }
    }
}

/// `env=[!]VAR` or `expr=…` after a CustomLog's format.
#[derive(Debug, Clone)]
pub enum LogCondition {
    Always,
    Env { name: String, present: bool },
    Expr(Cond),
}

/// A format string, read: text and fields in order.
#[derive(Debug, Clone, Default)]
pub struct Format {
    pub items: Vec<Item>,
}

#[derive(Debug, Clone)]
pub enum Item {
    Text(String),
    Field(Field),
}

/// One `%…` of a format string.
#[derive(Debug, Clone)]
pub struct Field {
    pub code: Code,
    /// The `{…}` argument.
    pub arg: Option<String>,
    /// `%400,501{…}i`: only for these statuses (or all but these, with
    /// `!`); "-" otherwise.
    pub statuses: Option<Statuses>,
    /// `%<s`: the original request's value rather than the final one (the
    /// same in wsgate, which makes no internal redirects).
    pub original: bool,
}

#[derive(Debug, Clone)]
pub struct Statuses {
    pub list: Vec<u16>,
    pub negate: bool,
}

/// What a field prints (Apache's letter in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// `%a`; `%{c}a` is the peer's address.
    RemoteAddr,
    /// `%A`
    LocalAddr,
    /// `%b`: body bytes, "-" for none.
    BodyBytesClf,
    /// `%B`
    BodyBytes,
    /// `%{NAME}C`
    Cookie,
    /// `%D`: microseconds.
    DurationUs,
    /// `%{VAR}e`
    Env,
    /// `%f`
    Filename,
    /// `%h`
    RemoteHost,
    /// `%H`
    Protocol,
    /// `%{NAME}i`
    RequestHeader,
    /// `%k`
    Keepalives,
    /// `%l`
    RemoteLogname,
    /// `%L`
    LogId,
    /// `%m`
    Method,
    /// `%{NAME}n`
    Note,
    /// `%{NAME}o`
    ResponseHeader,
    /// `%p`, `%{canonical|local|remote}p`
    Port,
    /// `%P`, `%{pid|tid|hextid}P`
    Pid,
    /// `%q`
    Query,
    /// `%r`
    RequestLine,
    /// `%R`
    Handler,
    /// `%s` (`%>s`, `%<s`)
    Status,
    /// `%t`, `%{format}t`
    Time,
    /// `%T`, `%{ms|us|s}T`
    DurationT,
    /// `%u`
    User,
    /// `%U`
    UrlPath,
    /// `%v`
    ServerName,
    /// `%V`
    HostName,
    /// `%X`
    ConnStatus,
    /// `%I` (mod_logio)
    BytesIn,
    /// `%O`
    BytesOut,
    /// `%S`
    BytesBoth,
    /// `%{VAR}x` (mod_ssl)
    Ssl,
    /// `%^ti`, `%^to`: trailers (none are kept: "-").
    Trailer,
}

impl Format {
    /// The response header names the format reads (`%{NAME}o`), lower-case.
    pub fn response_headers(&self) -> impl Iterator<Item = &str> {
        self.items.iter().filter_map(|i| match i {
            Item::Field(Field {
                code: Code::ResponseHeader,
                arg: Some(name),
                ..
            }) => Some(name.as_str()),
            _ => None,
        })
    }
}
