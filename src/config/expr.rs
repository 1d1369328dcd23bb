//! Parsing the part of Apache's ap_expr that header rules use (`expr=` on
//! `Header` and `RequestHeader`). Anything outside it is a configuration
//! error that names the unsupported part, never a silent mismatch.

use regex::{Regex, RegexBuilder};

use super::model::balancer::StatusExpr;
use super::model::headers::expr::{Cond, ExprVar, IpNet, Word};
use super::model::IntOp;

/// An address or network as `-ipmatch` takes it.
fn ip_net(s: &str) -> Option<IpNet> {
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
                    Word::Literal(s) => ip_net(&s)
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

// ProxyHCExpr: tests of `%{REQUEST_STATUS}` only.

/// Parses e.g. `%{REQUEST_STATUS} =~ /^[23]/ && %{REQUEST_STATUS} != 204`.
pub fn parse_status_expr(text: &str) -> Result<StatusExpr, String> {
    let tokens = status_tokens(text)?;
    let mut p = StatusParser { tokens, pos: 0 };
    let e = p.or()?;
    if p.pos != p.tokens.len() {
        return Err(format!("unexpected '{}'", p.tokens[p.pos]));
    }
    Ok(e)
}

fn status_tokens(text: &str) -> Result<Vec<String>, String> {
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

struct StatusParser {
    tokens: Vec<String>,
    pos: usize,
}

impl StatusParser {
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
