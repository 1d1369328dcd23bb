//! Backend urls (`scheme://host[:port]/path`) as ProxyPass and
//! BalancerMember name them, and the host and port of an authority.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
    Ws,
    Wss,
}

impl Scheme {
    pub fn parse(s: &str) -> Option<Scheme> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            "ws" => Some(Scheme::Ws),
            "wss" => Some(Scheme::Wss),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        }
    }

    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Https | Scheme::Wss)
    }

    pub fn is_websocket(self) -> bool {
        matches!(self, Scheme::Ws | Scheme::Wss)
    }

    pub fn default_port(self) -> u16 {
        if self.is_tls() {
            443
        } else {
            80
        }
    }
}

/// A backend url, split and canonicalised (scheme and host lower-case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl {
    pub scheme: Scheme,
    /// Host as written, lower-case; IPv6 without brackets.
    pub host: String,
    pub port: u16,
    /// Everything after the authority, possibly empty.
    pub path: String,
    /// `host` or `host:port` as a Host header carries it, made once here
    /// rather than per request.
    authority: String,
}

impl TargetUrl {
    /// `host` or `host:port` as the Host header carries it (default port left out).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// `scheme://authority`.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.authority)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum UrlError {
    NotAbsolute,
    Scheme(String),
    NoHost,
    UserInfo,
    Port,
}

impl UrlError {
    pub fn describe(&self) -> String {
        match self {
            UrlError::NotAbsolute => "url must be absolute (scheme://host[:port]/path)".into(),
            UrlError::Scheme(s) => {
                format!("scheme '{s}' is not one wsgate proxies to (http, https, ws, wss)")
            }
            UrlError::NoHost => "url has no host".into(),
            UrlError::UserInfo => {
                "url holds user information ('user@'), which wsgate refuses".into()
            }
            UrlError::Port => "url has a bad port (a number from 1 to 65535)".into(),
        }
    }
}

pub fn parse_target_url(url: &str) -> Result<TargetUrl, UrlError> {
    let (scheme, rest) = url.split_once("://").ok_or(UrlError::NotAbsolute)?;
    let scheme = Scheme::parse(scheme).ok_or_else(|| UrlError::Scheme(scheme.to_string()))?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(UrlError::UserInfo);
    }
    let (host, port) = split_host_port(authority);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._:~%".contains(&b))
    {
        return Err(UrlError::NoHost);
    }
    let port = match port {
        None | Some("") => scheme.default_port(),
        Some(p) => p.parse::<u16>().map_err(|_| UrlError::Port)?,
    };
    if port == 0 {
        return Err(UrlError::Port);
    }
    let host = host.to_ascii_lowercase();
    let bracketed = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let authority = if port == scheme.default_port() {
        bracketed
    } else {
        format!("{bracketed}:{port}")
    };
    Ok(TargetUrl {
        scheme,
        host,
        port,
        path: path.to_string(),
        authority,
    })
}

/// Splits `host:port` where host may be a bracketed IPv6 literal.
pub fn split_host_port(value: &str) -> (&str, Option<&str>) {
    if value.starts_with('[') {
        if let Some(end) = value.find(']') {
            let rest = &value[end + 1..];
            return (&value[..=end], rest.strip_prefix(':'));
        }
        return (value, None);
    }
    match value.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (value, None),
    }
}

/// `host[:port]` of an absolute-form request target (RFC 9112 §3.2.2).
pub fn absolute_form_authority(target: &str) -> Option<&str> {
    // Origin form, nearly every request: no scheme to look for.
    if target.starts_with('/') {
        return None;
    }
    let (scheme, rest) = target.split_once("://")?;
    if !["http", "https", "ws", "wss"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
    {
        return None;
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|a| !a.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_urls() {
        let u = parse_target_url("WS://Example.COM:9080/a/b?x").unwrap();
        assert_eq!(u.scheme, Scheme::Ws);
        assert_eq!(u.host, "example.com");
        assert_eq!(u.port, 9080);
        assert_eq!(u.path, "/a/b?x");
        assert_eq!(u.authority(), "example.com:9080");
        let u = parse_target_url("https://[::1]").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("::1", 443, ""));
        assert_eq!(u.authority(), "[::1]");
        assert_eq!(parse_target_url("/x"), Err(UrlError::NotAbsolute));
        assert_eq!(parse_target_url("http:///x"), Err(UrlError::NoHost));
        assert_eq!(parse_target_url("http://:80/x"), Err(UrlError::NoHost));
        assert_eq!(parse_target_url("http://a:1@b:2/"), Err(UrlError::UserInfo));
        assert!(matches!(
            parse_target_url("ftp://h/"),
            Err(UrlError::Scheme(_))
        ));
    }
}
