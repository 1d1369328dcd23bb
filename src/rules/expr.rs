//! The part of Apache's ap_expr that header recipes use: conditions
//! (`expr=` on `Header`/`RequestHeader`) and string values
//! (`expr=%{REQUEST_SCHEME}`). Anything outside it is a configuration error
//! that names the unsupported part, never a silent mismatch.

use regex::{Regex, RegexBuilder};

use crate::config::values::IntOp;

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

/// What an expression reads while it is evaluated.
pub trait Context {
    fn var(&self, var: &ExprVar) -> String;
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

impl Word {
    pub fn eval(&self, ctx: &dyn Context) -> String {
        match self {
            Word::Literal(s) => s.clone(),
            Word::Var(v) => ctx.var(v),
            Word::Concat(parts) => parts.iter().map(|p| p.eval(ctx)).collect(),
            Word::Lower(w) => w.eval(ctx).to_lowercase(),
            Word::Upper(w) => w.eval(ctx).to_uppercase(),
        }
    }
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
pub struct IpNet {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl IpNet {
    fn parse(s: &str) -> Option<IpNet> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: std::net::IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse().ok().filter(|n| *n <= max)?
        };
        Some(IpNet { addr, prefix })
    }

    fn contains(&self, ip: &str) -> bool {
        let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
            return false;
        };
        let ip = ip.to_canonical();
        match (self.addr, ip) {
            (std::net::IpAddr::V4(n), std::net::IpAddr::V4(i)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(n) & mask == u32::from(i) & mask
            }
            (std::net::IpAddr::V6(n), std::net::IpAddr::V6(i)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

impl Cond {
    pub fn eval(&self, ctx: &dyn Context) -> bool {
        match self {
            Cond::True => true,
            Cond::False => false,
            Cond::NonEmpty(w) => !w.eval(ctx).is_empty(),
            Cond::Empty(w) => w.eval(ctx).is_empty(),
            Cond::Eq(a, b) => a.eval(ctx) == b.eval(ctx),
            Cond::Ne(a, b) => a.eval(ctx) != b.eval(ctx),
            Cond::Less(a, b, eq) => {
                let (a, b) = (a.eval(ctx), b.eval(ctx));
                a < b || (*eq && a == b)
            }
            Cond::Greater(a, b, eq) => {
                let (a, b) = (a.eval(ctx), b.eval(ctx));
                a > b || (*eq && a == b)
            }
            Cond::IntCmp(a, op, b) => {
                let num = |w: &Word| w.eval(ctx).trim().parse::<i64>().unwrap_or(0);
                op.holds(num(a), num(b))
            }
            Cond::Matches(w, re, want) => re.is_match(&w.eval(ctx)) == *want,
            Cond::IpMatch(w, net) => net.contains(&w.eval(ctx)),
            Cond::In(w, list) => {
                let v = w.eval(ctx);
                list.iter().any(|l| l.eval(ctx) == v)
            }
            Cond::Not(c) => !c.eval(ctx),
            Cond::And(a, b) => a.eval(ctx) && b.eval(ctx),
            Cond::Or(a, b) => a.eval(ctx) || b.eval(ctx),
        }
    }
}

/// Parses a condition.
pub fn parse_cond(text: &str) -> Result<Cond, String> {
    let tokens = tokenize(text)?;
    let mut p = Parser { tokens, pos: 0 };
    let c = p.or()?;
    if let Some(t) = p.tokens.get(p.pos) {
        return Err(format!("unexpected '{}'", t.text()));
    }
    Ok(c)
}

/// Parses a string expression: literal text with `%{VAR}` interpolated.
pub fn parse_string(text: &str) -> Result<Word, String> {
    interpolate(text)
}

fn interpolate(text: &str) -> Result<Word, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("%{") {
        if start > 0 {
            parts.push(Word::Literal(rest[..start].to_string()));
        }
        let end = rest[start..].find('}').ok_or("unterminated %{")? + start;
        parts.push(Word::Var(variable(&rest[start + 2..end])?));
        rest = &rest[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(Word::Literal(rest.to_string()));
    }
    Ok(match parts.len() {
        1 => parts.pop().expect("one part"),
        _ => Word::Concat(parts),
    })
}

fn variable(name: &str) -> Result<ExprVar, String> {
    if let Some(h) = name.strip_prefix("HTTP:") {
        return Ok(ExprVar::Header(h.to_string()));
    }
    if let Some(e) = name.strip_prefix("ENV:") {
        return Ok(ExprVar::Env(e.to_string()));
    }
    Ok(match name {
        "REQUEST_SCHEME" => ExprVar::RequestScheme,
        "HTTP_HOST" => ExprVar::HttpHost,
        "REQUEST_URI" => ExprVar::RequestUri,
        "REQUEST_METHOD" => ExprVar::RequestMethod,
        "QUERY_STRING" => ExprVar::QueryString,
        "REMOTE_ADDR" => ExprVar::RemoteAddr,
        "HTTPS" => ExprVar::Https,
        "SERVER_NAME" => ExprVar::ServerName,
        "SERVER_PORT" => ExprVar::ServerPort,
        "THE_REQUEST" => ExprVar::TheRequest,
        "REQUEST_STATUS" => ExprVar::RequestStatus,
        "HTTP_USER_AGENT" => ExprVar::Header("User-Agent".into()),
        "HTTP_COOKIE" => ExprVar::Header("Cookie".into()),
        "HTTP_REFERER" => ExprVar::Header("Referer".into()),
        "HTTP_ACCEPT" => ExprVar::Header("Accept".into()),
        _ => return Err(format!("the variable %{{{name}}} is not supported")),
    })
}

#[derive(Debug, Clone)]
enum Token {
    Word(Word),
    Regex(Regex),
    Op(String),
}

impl Token {
    fn text(&self) -> String {
        match self {
            Token::Word(w) => format!("{w:?}"),
            Token::Regex(r) => format!("/{r}/"),
            Token::Op(o) => o.clone(),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let rest: String = chars[i..].iter().collect();
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' {
            let end = chars[i + 1..]
                .iter()
                .position(|&d| d == c)
                .ok_or("unterminated string")?;
            let s: String = chars[i + 1..i + 1 + end].iter().collect();
            out.push(Token::Word(interpolate(&s)?));
            i += end + 2;
        } else if c == '/'
            || (c == 'm'
                && chars
                    .get(i + 1)
                    .is_some_and(|d| !d.is_alphanumeric() && !d.is_whitespace()))
        {
            let (delim, start) = if c == '/' {
                ('/', i + 1)
            } else {
                (chars[i + 1], i + 2)
            };
            let end = chars[start..]
                .iter()
                .position(|&d| d == delim)
                .ok_or("unterminated regular expression")?;
            let body: String = chars[start..start + end].iter().collect();
            let mut j = start + end + 1;
            let nocase = chars.get(j) == Some(&'i');
            if nocase {
                j += 1;
            }
            let re = RegexBuilder::new(&body)
                .case_insensitive(nocase)
                .dot_matches_new_line(true)
                .build()
                .map_err(|e| {
                    format!(
                        "regular expression /{body}/: {}",
                        e.to_string().lines().last().unwrap_or("")
                    )
                })?;
            out.push(Token::Regex(re));
            i = j;
        } else if let Some(op) = [
            "&&", "||", "==", "!=", "=~", "!~", "<=", ">=", "(", ")", "{", "}", ",", "!", "<", ">",
            ".",
        ]
        .iter()
        .find(|op| rest.starts_with(**op))
        {
            out.push(Token::Op(op.to_string()));
            i += op.len();
        } else if rest.starts_with("%{") {
            let end = rest.find('}').ok_or("unterminated %{")?;
            out.push(Token::Word(Word::Var(variable(&rest[2..end])?)));
            i += rest[..=end].chars().count();
        } else if c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_alphabetic()) {
            let end = chars[i + 1..]
                .iter()
                .position(|d| !d.is_ascii_alphanumeric())
                .map_or(chars.len(), |p| i + 1 + p);
            out.push(Token::Op(chars[i..end].iter().collect()));
            i = end;
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let end = chars[i..]
                .iter()
                .position(|d| !(d.is_ascii_alphanumeric() || *d == '_'))
                .map_or(chars.len(), |p| i + p);
            let w: String = chars[i..end].iter().collect();
            out.push(match w.as_str() {
                "true" | "false" | "in" | "tolower" | "toupper" => Token::Op(w),
                _ if w.chars().all(|d| d.is_ascii_digit()) => Token::Word(Word::Literal(w)),
                _ => {
                    return Err(format!(
                        "'{w}' is not supported here (quote strings, e.g. '{w}')"
                    ))
                }
            });
            i = end;
        } else {
            return Err(format!("unexpected '{c}'"));
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn op(&self) -> Option<&str> {
        match self.tokens.get(self.pos) {
            Some(Token::Op(o)) => Some(o),
            _ => None,
        }
    }

    fn eat(&mut self, op: &str) -> bool {
        if self.op() == Some(op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Cond, String> {
        let mut c = self.and()?;
        while self.eat("||") {
            c = Cond::Or(Box::new(c), Box::new(self.and()?));
        }
        Ok(c)
    }

    fn and(&mut self) -> Result<Cond, String> {
        let mut c = self.unary()?;
        while self.eat("&&") {
            c = Cond::And(Box::new(c), Box::new(self.unary()?));
        }
        Ok(c)
    }

    fn unary(&mut self) -> Result<Cond, String> {
        if self.eat("!") {
            return Ok(Cond::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let c = self.or()?;
            if !self.eat(")") {
                return Err("missing ')'".into());
            }
            return Ok(c);
        }
        if self.eat("true") {
            return Ok(Cond::True);
        }
        if self.eat("false") {
            return Ok(Cond::False);
        }
        match self.op() {
            Some("-n") => {
                self.pos += 1;
                return Ok(Cond::NonEmpty(self.word()?));
            }
            Some("-z") => {
                self.pos += 1;
                return Ok(Cond::Empty(self.word()?));
            }
            Some(o) if o.starts_with('-') => {
                return Err(format!("the test '{o}' is not supported"))
            }
            _ => {}
        }
        let left = self.word()?;
        let op = match self.tokens.get(self.pos) {
            Some(Token::Op(o)) => o.clone(),
            _ => return Err("expected a comparison (==, !=, =~, -ipmatch…)".into()),
        };
        self.pos += 1;
        if let Some(int) = IntOp::from_test(&op) {
            return Ok(Cond::IntCmp(left, int, self.word()?));
        }
        Ok(match op.as_str() {
            "==" => Cond::Eq(left, self.word()?),
            "!=" => Cond::Ne(left, self.word()?),
            "<" => Cond::Less(left, self.word()?, false),
            "<=" => Cond::Less(left, self.word()?, true),
            ">" => Cond::Greater(left, self.word()?, false),
            ">=" => Cond::Greater(left, self.word()?, true),
            "=~" | "!~" => match self.tokens.get(self.pos).cloned() {
                Some(Token::Regex(re)) => {
                    self.pos += 1;
                    Cond::Matches(left, re, op == "=~")
                }
                _ => return Err(format!("expected /regex/ after {op}")),
            },
            "-ipmatch" => {
                let net = match self.word()? {
                    Word::Literal(s) => IpNet::parse(&s)
                        .ok_or_else(|| format!("'{s}' is not an IP address or network"))?,
                    _ => return Err("-ipmatch takes a literal address or network".into()),
                };
                Cond::IpMatch(left, net)
            }
            "in" => {
                if !self.eat("{") {
                    return Err("expected '{' after in".into());
                }
                let mut list = vec![self.word()?];
                while self.eat(",") {
                    list.push(self.word()?);
                }
                if !self.eat("}") {
                    return Err("expected '}'".into());
                }
                Cond::In(left, list)
            }
            other => return Err(format!("the operator '{other}' is not supported")),
        })
    }

    fn word(&mut self) -> Result<Word, String> {
        let mut w = self.single_word()?;
        while self.eat(".") {
            let next = self.single_word()?;
            w = Word::Concat(vec![w, next]);
        }
        Ok(w)
    }

    fn single_word(&mut self) -> Result<Word, String> {
        for (name, wrap) in [("tolower", true), ("toupper", false)] {
            if self.eat(name) {
                if !self.eat("(") {
                    return Err(format!("expected '(' after {name}"));
                }
                let inner = self.word()?;
                if !self.eat(")") {
                    return Err("missing ')'".into());
                }
                return Ok(if wrap {
                    Word::Lower(Box::new(inner))
                } else {
                    Word::Upper(Box::new(inner))
                });
            }
        }
        match self.tokens.get(self.pos).cloned() {
            Some(Token::Word(w)) => {
                self.pos += 1;
                Ok(w)
            }
            Some(t) => Err(format!(
                "expected a string or %{{VARIABLE}}, found {}",
                t.text()
            )),
            None => Err("unexpected end of expression".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vars;
    impl Context for Vars {
        fn var(&self, v: &ExprVar) -> String {
            match v {
                ExprVar::RequestScheme => "https".into(),
                ExprVar::RequestUri => "/app/x".into(),
                ExprVar::RemoteAddr => "127.0.0.5".into(),
                ExprVar::Header(h) if h == "X-A" => "v".into(),
                _ => String::new(),
            }
        }
    }

    fn holds(text: &str) -> bool {
        parse_cond(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .eval(&Vars)
    }

    #[test]
    fn conditions() {
        assert!(holds("%{REQUEST_URI} =~ m#^/app/#"));
        assert!(holds("%{HTTP:X-A} == 'v' && -n %{HTTP:X-A}"));
        assert!(holds("-z %{HTTP:X-Missing} || false"));
        assert!(holds("!(%{REQUEST_SCHEME} != 'https')"));
        assert!(holds("%{REMOTE_ADDR} -ipmatch '127.0.0.0/8'"));
        assert!(!holds("%{REMOTE_ADDR} -ipmatch '10.0.0.0/8'"));
        assert!(holds("%{REQUEST_SCHEME} in { 'http', 'https' }"));
        assert!(holds("tolower(%{HTTP:X-A}) == 'v'"));
        assert!(holds("%{REQUEST_URI} !~ /admin/i"));
    }

    #[test]
    fn strings_interpolate() {
        assert_eq!(
            parse_string("%{REQUEST_SCHEME}").unwrap().eval(&Vars),
            "https"
        );
        assert_eq!(
            parse_string("proto=%{REQUEST_SCHEME};")
                .unwrap()
                .eval(&Vars),
            "proto=https;"
        );
    }

    #[test]
    fn unsupported_parts_are_named() {
        assert!(parse_cond("%{TIME_HOUR} -gt 6")
            .unwrap_err()
            .contains("TIME_HOUR"));
        assert!(parse_cond("-f '/etc/passwd'").unwrap_err().contains("-f"));
        assert!(parse_cond("%{HTTP:X} -strmatch 'a*'")
            .unwrap_err()
            .contains("-strmatch"));
    }
}
