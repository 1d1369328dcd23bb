//! mod_headers, mod_env and mod_setenvif rules as data, and the part of
//! ap_expr they use. `config::headers` builds them, `crate::rules` applies
//! them.

use regex::bytes::Regex as BytesRegex;
use regex::Regex;

use super::super::error::Origin;
use super::IntOp;

/// The header and environment directives of one context.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// `Header` rules, in order.
    pub response: Vec<HeaderRule>,
    /// `RequestHeader` rules, in order.
    pub request: Vec<HeaderRule>,
    /// `SetEnv NAME VALUE` (`Some`) and `UnsetEnv NAME` (`None`), in order.
    pub setenv: Vec<(String, Option<String>)>,
    pub setenvif: Vec<SetEnvIf>,
    /// mod_deflate's filter: the media types it compresses
    /// (`AddOutputFilterByType DEFLATE …`), `*` for every type
    /// (`SetOutputFilter DEFLATE`). Lower-case.
    pub deflate: Vec<String>,
}

impl Rules {
    pub fn is_empty(&self) -> bool {
        self.response.is_empty()
            && self.request.is_empty()
            && self.setenv.is_empty()
            && self.setenvif.is_empty()
            && self.deflate.is_empty()
    }

    /// `self` followed by `more`, as Apache merges a context over another.
    pub fn merged(&self, more: &Rules) -> Rules {
        let mut r = self.clone();
        r.response.extend(more.response.iter().cloned());
        r.request.extend(more.request.iter().cloned());
        r.setenv.extend(more.setenv.iter().cloned());
        r.setenvif.extend(more.setenvif.iter().cloned());
        r.deflate.extend(more.deflate.iter().cloned());
        r
    }
}

#[derive(Debug, Clone)]
pub enum Action {
    Set,
    Append,
    Add,
    Merge,
    SetIfEmpty,
    Unset,
    /// `edit` (first match) or `edit*` (every match).
    Edit {
        pattern: Regex,
        replacement: String,
        all: bool,
    },
    /// `Header echo REGEX`: copy matching request headers to the response.
    Echo(Regex),
}

#[derive(Debug, Clone)]
pub enum Condition {
    Always,
    /// `early`: applied before anything else reads the request.
    Early,
    /// `env=VAR` or `env=!VAR`.
    Env {
        name: String,
        present: bool,
    },
    Expr(expr::Cond),
}

#[derive(Debug, Clone)]
pub enum Value {
    Format(Vec<Piece>),
    Expr(expr::Word),
}

/// A piece of a header value's format string.
#[derive(Debug, Clone)]
pub enum Piece {
    Literal(String),
    /// `%{VAR}e`.
    Env(String),
    /// `%t`: `t=` and the time the request was received, in microseconds.
    Time,
    /// `%D`: `D=` and how long the request has taken so far, in microseconds.
    Duration,
}

/// One `Header` or `RequestHeader` line.
#[derive(Debug, Clone)]
pub struct HeaderRule {
    /// `always` (response headers of every response, errors included)
    /// rather than `onsuccess`.
    pub always: bool,
    pub action: Action,
    pub name: String,
    pub value: Option<Value>,
    pub condition: Condition,
    pub origin: Origin,
}

/// `SetEnvIf` / `SetEnvIfNoCase`: a request attribute, a regex, and the
/// variables to set (`VAR`, `VAR=value` with `$N`) or unset (`!VAR`).
#[derive(Debug, Clone)]
pub struct SetEnvIf {
    pub attribute: Attribute,
    pub pattern: BytesRegex,
    pub assignments: Vec<(String, Option<String>)>,
}

#[derive(Debug, Clone)]
pub enum Attribute {
    RemoteHost,
    RemoteAddr,
    ServerAddr,
    RequestMethod,
    RequestProtocol,
    RequestUri,
    /// A request header, or failing that an environment variable.
    Header(String),
}

/// The part of Apache's ap_expr that header recipes use (`expr=`).
pub mod expr {
    use regex::Regex;

    use super::IntOp;

    /// A variable an expression can read.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum ExprVar {
        Header(String),
        Env(String),
        RequestScheme,
        HttpHost,
        RequestUri,
        RequestMethod,
        QueryString,
        RemoteAddr,
        Https,
        ServerName,
        ServerPort,
        TheRequest,
        RequestStatus,
    }

    #[derive(Debug, Clone)]
    pub enum Word {
        Literal(String),
        Var(ExprVar),
        /// Pieces joined: `'a%{X}b'` or `%{A}.%{B}`.
        Concat(Vec<Word>),
        Lower(Box<Word>),
        Upper(Box<Word>),
    }

    #[derive(Debug, Clone)]
    pub enum Cond {
        True,
        False,
        NonEmpty(Word),
        Empty(Word),
        Eq(Word, Word),
        Ne(Word, Word),
        Less(Word, Word, bool),
        Greater(Word, Word, bool),
        IntCmp(Word, IntOp, Word),
        Matches(Word, Regex, bool),
        IpMatch(Word, IpNet),
        In(Word, Vec<Word>),
        Not(Box<Cond>),
        And(Box<Cond>, Box<Cond>),
        Or(Box<Cond>, Box<Cond>),
    }

    #[derive(Debug, Clone, Copy)]
    /// An address and how many of its leading bits a match compares.
    pub struct IpNet {
        pub addr: std::net::IpAddr,
        pub prefix: u8,
    }
}
