//! mod_log_config's directives: `LogFormat`, `CustomLog`, `TransferLog`,
//! `GlobalLog`, `BufferedLogs`, and the format strings they carry.
//!
//! As in Apache, a `CustomLog`'s format is looked up among the nicknames
//! when the whole configuration is read (a nickname may be defined after
//! the line that uses it); a virtual host sees the main server's nicknames
//! under its own; a virtual host without logs of its own writes to the main
//! server's; `GlobalLog` lines are written for every server.

use super::core::directory_exists;
use super::directives::arg;
use super::error::{ConfigError, Origin};
use super::expr;
use super::lexer::Node;
use super::model::log::{AccessLog, Code, Field, Format, Item, LogCondition, LogTarget, Statuses};
use super::{At, Builder};

/// Apache's format when none is given: the Common Log Format.
const CLF: &str = "%h %l %u %t \"%r\" %>s %b";

/// The nicknames Debian's `apache2.conf` defines, for a configuration that
/// uses one without defining it (Apache would write the word itself).
const STOCK_NICKNAMES: &[(&str, &str)] = &[
    (
        "vhost_combined",
        "%v:%p %h %l %u %t \"%r\" %>s %O \"%{Referer}i\" \"%{User-Agent}i\"",
    ),
    (
        "combined",
        "%h %l %u %t \"%r\" %>s %O \"%{Referer}i\" \"%{User-Agent}i\"",
    ),
    ("common", "%h %l %u %t \"%r\" %>s %O"),
    ("referer", "%{Referer}i -> %U"),
    ("agent", "%{User-agent}i"),
];

/// A server's log directives, before the configuration is whole.
#[derive(Debug, Default)]
pub(crate) struct LogDraft {
    /// `LogFormat FORMAT NICKNAME`, later lines winning.
    formats: Vec<(String, Format)>,
    /// `LogFormat FORMAT` (no nickname): what `TransferLog` writes.
    default_format: Option<Format>,
    logs: Vec<LogLine>,
}

#[derive(Debug)]
pub(crate) struct LogLine {
    target: LogTarget,
    /// The format or nickname as written; `None` for `TransferLog`.
    format: Option<String>,
    when: LogCondition,
    origin: Origin,
}

/// The access logs of every server, once the configuration is whole.
pub(crate) struct Resolved {
    pub logs: Vec<AccessLog>,
    pub main: Vec<usize>,
    pub vhosts: Vec<Vec<usize>>,
}

pub(super) fn log_format(b: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let _ = b;
    let o = &node.origin;
    let (text, nick) = match node.args.as_slice() {
        [text] => (text, None),
        [text, nick] => (text, Some(nick)),
        _ => {
            return Err(
                ConfigError::new(o, "LogFormat takes a format and an optional nickname")
                    .hint("e.g. LogFormat \"%h %l %u %t \\\"%r\\\" %>s %b\" common"),
            )
        }
    };
    let format = parse_format(text).map_err(|e| ConfigError::new(o, format!("LogFormat: {e}")))?;
    let draft = &mut at.server.log;
    match nick {
        Some(nick) => draft.formats.push((nick.clone(), format)),
        None => draft.default_format = Some(format),
    }
    Ok(())
}

pub(super) fn custom_log(b: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let line = read_custom(b, node)?;
    if node.name.eq_ignore_ascii_case("GlobalLog") {
        b.global_logs.push(line);
    } else {
        at.server.log.logs.push(line);
    }
    Ok(())
}

pub(super) fn transfer_log(
    b: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let target = read_target(b, &node.origin, "TransferLog", arg(node))?;
    at.server.log.logs.push(LogLine {
        target,
        format: None,
        when: LogCondition::Always,
        origin: node.origin.clone(),
    });
    Ok(())
}

pub(super) fn buffered_logs(
    _: &mut Builder,
    _: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    // Lines always go through a writer off the request path; `On` asks for
    // the same thing, so both are accepted.
    super::values::on_off(&node.origin, "BufferedLogs", arg(node)).map(|_| ())
}

fn read_custom(b: &Builder, node: &Node) -> Result<LogLine, ConfigError> {
    let (o, name) = (&node.origin, node.name.as_str());
    let (target, format, cond) = match node.args.as_slice() {
        [t, f] => (t, f, None),
        [t, f, c] => (t, f, Some(c)),
        _ => {
            return Err(ConfigError::new(
                o,
                format!("{name} takes a file or pipe, a format or nickname, and an optional env=[!]VAR or expr=EXPRESSION"),
            )
            .hint(format!("e.g. {name} logs/access.log combined")))
        }
    };
    let when = match cond {
        None => LogCondition::Always,
        Some(c) => read_condition(o, name, c)?,
    };
    Ok(LogLine {
        target: read_target(b, o, name, target)?,
        format: Some(format.clone()),
        when,
        origin: o.clone(),
    })
}

fn read_condition(o: &Origin, name: &str, c: &str) -> Result<LogCondition, ConfigError> {
    let lower = c.to_ascii_lowercase();
    if let Some(var) = lower.strip_prefix("env=").map(|_| &c[4..]) {
        let (present, var) = match var.strip_prefix('!') {
            Some(v) => (false, v),
            None => (true, var),
        };
        if var.is_empty() {
            return Err(ConfigError::new(
                o,
                format!("{name}: env= needs a variable name"),
            ));
        }
        return Ok(LogCondition::Env {
            name: var.to_string(),
            present,
        });
    }
    if lower.starts_with("expr=") {
        let cond = expr::parse_cond(&c[5..])
            .map_err(|e| ConfigError::new(o, format!("{name}: expr={}: {e}", &c[5..])))?;
        return Ok(LogCondition::Expr(cond));
    }
    Err(ConfigError::new(
        o,
        format!("{name}: '{c}' is not a condition (error in condition clause)"),
    )
    .hint("the last argument may be env=VAR, env=!VAR or expr=EXPRESSION"))
}

fn read_target(b: &Builder, o: &Origin, name: &str, t: &str) -> Result<LogTarget, ConfigError> {
    if let Some(rest) = t.strip_prefix('|') {
        let (command, shell) = match rest.strip_prefix('|') {
            Some(r) => (r, false),
            None => match rest.strip_prefix('$') {
                Some(r) => (r, true),
                None => (rest, false),
            },
        };
        let command = command.trim();
        if command.is_empty() {
            return Err(ConfigError::new(
                o,
                format!("{name}: '{t}' names no program"),
            ));
        }
        if !shell && split_command(command).is_none() {
            return Err(ConfigError::new(
                o,
                format!("{name}: '{t}': an unterminated quote in the command"),
            ));
        }
        return Ok(LogTarget::Pipe {
            command: command.to_string(),
            shell,
        });
    }
    if t.to_ascii_lowercase().starts_with("syslog") {
        return Err(
            ConfigError::new(o, format!("{name} '{t}': syslog is not supported")).hint(
                "give a file path, or a piped program such as \"|/usr/bin/logger -t wsgate\"",
            ),
        );
    }
    let path = b.root.join(t);
    directory_exists(o, name, &path)?;
    Ok(LogTarget::File(path))
}

/// The words of a piped log's command, as Apache splits a program's
/// arguments (whitespace; double or single quotes group; a backslash keeps
/// the next character); `None` for an unterminated quote.
pub fn split_command(command: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                word.extend(chars.next());
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return None;
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

impl LogDraft {
    fn nickname(&self, nick: &str) -> Option<&Format> {
        self.formats
            .iter()
            .rev()
            .find(|(n, _)| n == nick)
            .map(|(_, f)| f)
    }
}

/// Each server's logs, with their formats looked up: a vhost's own
/// nicknames first, then the main server's.
pub(crate) fn resolve(
    main: &LogDraft,
    vhosts: &[&LogDraft],
    global: &[LogLine],
    warnings: &mut Vec<String>,
) -> Result<Resolved, ConfigError> {
    let mut logs = Vec::new();
    let mut add = |line: &LogLine, own: Option<&LogDraft>| -> Result<usize, ConfigError> {
        let format = line_format(line, own, main, warnings)?;
        logs.push(AccessLog {
            target: line.target.clone(),
            format,
            when: line.when.clone(),
            origin: line.origin.clone(),
        });
        Ok(logs.len() - 1)
    };
    let globals = global
        .iter()
        .map(|l| add(l, None))
        .collect::<Result<Vec<_>, _>>()?;
    let mut main_logs = main
        .logs
        .iter()
        .map(|l| add(l, None))
        .collect::<Result<Vec<_>, _>>()?;
    let mut vhost_logs = Vec::with_capacity(vhosts.len());
    for v in vhosts {
        let mut own = if v.logs.is_empty() {
            main_logs.clone()
        } else {
            v.logs
                .iter()
                .map(|l| add(l, Some(v)))
                .collect::<Result<Vec<_>, _>>()?
        };
        own.extend(&globals);
        vhost_logs.push(own);
    }
    main_logs.extend(&globals);
    Ok(Resolved {
        logs,
        main: main_logs,
        vhosts: vhost_logs,
    })
}

fn line_format(
    line: &LogLine,
    own: Option<&LogDraft>,
    main: &LogDraft,
    warnings: &mut Vec<String>,
) -> Result<Format, ConfigError> {
    let Some(written) = &line.format else {
        let default = own
            .and_then(|d| d.default_format.as_ref())
            .or(main.default_format.as_ref());
        return Ok(match default {
            Some(f) => f.clone(),
            None => parse_format(CLF).unwrap_or_default(),
        });
    };
    if let Some(f) = own
        .and_then(|d| d.nickname(written))
        .or_else(|| main.nickname(written))
    {
        return Ok(f.clone());
    }
    if !written.contains('%') {
        if let Some((_, stock)) = STOCK_NICKNAMES.iter().find(|(n, _)| *n == written) {
            warnings.push(format!(
                "{}: no LogFormat defines the nickname '{written}': wsgate writes Debian's '{written}' format ({stock}); Apache would write the word '{written}' on every line",
                line.origin
            ));
            return Ok(parse_format(stock).unwrap_or_default());
        }
        warnings.push(format!(
            "{}: '{written}' is neither a LogFormat nickname nor a format with a %: every line will be just '{written}' (as in Apache)",
            line.origin
        ));
    }
    parse_format(written).map_err(|e| ConfigError::new(&line.origin, e))
}

/// Reads a format string as mod_log_config does.
pub fn parse_format(text: &str) -> Result<Format, String> {
    let mut items: Vec<Item> = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('%') {
            if let Some(after) = after.strip_prefix('%') {
                push_text(&mut items, "%");
                rest = after;
                continue;
            }
            let (field, after) = parse_field(after)?;
            items.push(Item::Field(field));
            rest = after;
        } else {
            let end = rest.find('%').unwrap_or(rest.len());
            push_text(&mut items, &unescape(&rest[..end]));
            rest = &rest[end..];
        }
    }
    Ok(Format { items })
}

fn push_text(items: &mut Vec<Item>, text: &str) {
    if let Some(Item::Text(t)) = items.last_mut() {
        t.push_str(text);
    } else if !text.is_empty() {
        items.push(Item::Text(text.to_string()));
    }
}

/// `\n`, `\t` and `\\` in a format's text (other backslashes stay).
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            _ => {
                out.push('\\');
                continue;
            }
        }
        chars.next();
    }
    out
}

/// One field after its `%`: modifiers, `{argument}`, the letter.
fn parse_field(mut s: &str) -> Result<(Field, &str), String> {
    let mut field = Field {
        code: Code::Trailer,
        arg: None,
        statuses: None,
        original: false,
    };
    let mut negate = false;
    let mut list = Vec::new();
    loop {
        let Some(c) = s.chars().next() else {
            return Err("Ran off end of LogFormat parsing args to some directive".into());
        };
        match c {
            '!' => {
                negate = !negate;
                s = &s[1..];
            }
            '<' => {
                field.original = true;
                s = &s[1..];
            }
            '>' => {
                field.original = false;
                s = &s[1..];
            }
            ',' => s = &s[1..],
            '{' => {
                let end = s.find('}').unwrap_or(s.len());
                field.arg = Some(s[1..end].to_string());
                s = s.get(end + 1..).unwrap_or("");
            }
            '0'..='9' => {
                let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
                list.push(s[..end].parse::<u16>().unwrap_or(u16::MAX));
                s = &s[end..];
            }
            _ => {
                let (code, len) = code_of(s).ok_or_else(|| {
                    format!(
                        "Unrecognized LogFormat directive %{c} (the codes wsgate knows: a A b B C D e f h H i I k l L m n o O p P q r R s S t T u U v V x X ^ti ^to)"
                    )
                })?;
                field.code = code;
                if !list.is_empty() {
                    field.statuses = Some(Statuses { list, negate });
                }
                return Ok((field, &s[len..]));
            }
        }
    }
}

fn code_of(s: &str) -> Option<(Code, usize)> {
    if s.starts_with("^ti") || s.starts_with("^to") {
        return Some((Code::Trailer, 3));
    }
    let c = s.chars().next()?;
    let code = match c {
        'a' => Code::RemoteAddr,
        'A' => Code::LocalAddr,
        'b' => Code::BodyBytesClf,
        'B' => Code::BodyBytes,
        'C' => Code::Cookie,
        'D' => Code::DurationUs,
        'e' => Code::Env,
        'f' => Code::Filename,
        'h' => Code::RemoteHost,
        'H' => Code::Protocol,
        'i' => Code::RequestHeader,
        'k' => Code::Keepalives,
        'l' => Code::RemoteLogname,
        'L' => Code::LogId,
        'm' => Code::Method,
        'n' => Code::Note,
        'o' => Code::ResponseHeader,
        'p' => Code::Port,
        'P' => Code::Pid,
        'q' => Code::Query,
        'r' => Code::RequestLine,
        'R' => Code::Handler,
        's' => Code::Status,
        't' => Code::Time,
        'T' => Code::DurationT,
        'u' => Code::User,
        'U' => Code::UrlPath,
        'v' => Code::ServerName,
        'V' => Code::HostName,
        'X' => Code::ConnStatus,
        'I' => Code::BytesIn,
        'O' => Code::BytesOut,
        'S' => Code::BytesBoth,
        'x' => Code::Ssl,
        _ => return None,
    };
    Some((code, c.len_utf8()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(f: &Format) -> Vec<(Code, Option<&str>)> {
        f.items
            .iter()
            .filter_map(|i| match i {
                Item::Field(f) => Some((f.code, f.arg.as_deref())),
                Item::Text(_) => None,
            })
            .collect()
    }

    #[test]
    fn the_combined_format_reads_as_apache_reads_it() {
        let f = parse_format(STOCK_NICKNAMES[1].1).unwrap();
        assert_eq!(
            fields(&f),
            vec![
                (Code::RemoteHost, None),
                (Code::RemoteLogname, None),
                (Code::User, None),
                (Code::Time, None),
                (Code::RequestLine, None),
                (Code::Status, None),
                (Code::BytesOut, None),
                (Code::RequestHeader, Some("Referer")),
                (Code::RequestHeader, Some("User-Agent")),
            ]
        );
        assert!(matches!(&f.items[1], Item::Text(t) if t == " "));
    }

    #[test]
    fn modifiers_conditions_and_escapes() {
        let f = parse_format("%!200,304{Referer}i %<s %% a\\tb\\n\\q %{%d/%b}t %^ti").unwrap();
        let Item::Field(first) = &f.items[0] else {
            panic!("a field first: {f:?}")
        };
        let st = first.statuses.as_ref().unwrap();
        assert_eq!((st.list.as_slice(), st.negate), (&[200, 304][..], true));
        let Item::Field(orig) = &f.items[2] else {
            panic!("{f:?}")
        };
        assert!(orig.original && orig.code == Code::Status);
        assert!(matches!(&f.items[3], Item::Text(t) if t == " % a\tb\n\\q "));
        assert_eq!(
            fields(&f)[2..],
            [(Code::Time, Some("%d/%b")), (Code::Trailer, None)]
        );
    }

    #[test]
    fn an_unknown_code_or_a_cut_field_is_apaches_error() {
        let e = parse_format("%h %Z").unwrap_err();
        assert!(e.starts_with("Unrecognized LogFormat directive %Z"), "{e}");
        let e = parse_format("%{Referer").unwrap_err();
        assert!(e.contains("Ran off end"), "{e}");
    }

    #[test]
    fn piped_commands_split_as_apache_splits_them() {
        assert_eq!(
            split_command("/usr/bin/rotatelogs -l '/var/log/a b' 86400").unwrap(),
            ["/usr/bin/rotatelogs", "-l", "/var/log/a b", "86400"]
        );
        assert_eq!(
            split_command(r#"a "b \" c" d\ e"#).unwrap(),
            ["a", "b \" c", "d e"]
        );
        assert!(split_command("a 'b").is_none());
    }
}
