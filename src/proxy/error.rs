//! What can go wrong while proxying one request, who is to blame, and the
//! one place that turns it into a status for the client (S72).

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    // The client's fault.
    #[error("client sent a malformed request: {0}")]
    BadRequest(&'static str),
    #[error("client request body larger than LimitRequestBody")]
    BodyTooLarge,
    #[error("client went away: {0}")]
    ClientIo(String),
    /// An HTTP/2 stream whose body stalled (`H2StreamTimeout`): reset.
    #[error("client timed out")]
    ClientTimeout,
    /// A body too slow (`RequestReadTimeout body=`, or a read past
    /// `Timeout`): Apache's 408.
    #[error("request body read timeout")]
    ClientTooSlow,

    // The backend's fault.
    #[error("DNS lookup failure for: {0} ({1})")]
    Dns(String, String),
    #[error("backend connect failed: {0}")]
    Connect(String),
    #[error("no free connection to the backend (max= reached)")]
    PoolExhausted,
    #[error("{0}: no usable member")]
    NoMember(String),
    #[error("TLS handshake with the backend failed: {0}")]
    TlsHandshake(String),
    #[error("backend did not answer within the timeout")]
    BackendTimeout,
    #[error("backend closed the connection before answering")]
    BackendClosed,
    #[error("backend connection failed: {0}")]
    BackendIo(String),
    #[error("backend sent a malformed response: {0}")]
    BadResponse(&'static str),
    #[error("backend does not speak HTTP/1")]
    NotHttp1,
    #[error("backend sent a bare CR in a response header")]
    BackendBareCr,
    #[error("backend switched protocols wrongly: {0}")]
    BadUpgrade(String),
    #[error("backend sent more than 10 interim responses")]
    TooManyInterim,
    /// `ProxyErrorOverride`: the backend's error answer is replaced by the
    /// server's own page for its status (not the backend's fault).
    #[error("backend answered {}: ProxyErrorOverride answers with the server's own page", .0.status)]
    ErrorOverride(Box<Overridden>),

    // Ours (configuration).
    #[error("https:// or wss:// backend without SSLProxyEngine On")]
    TlsNotEnabled,
}

impl ProxyError {
    /// The cause an upgrade request that failed this way is counted under.
    pub fn upgrade_cause(&self) -> crate::ops::stats::Upgrade {
        use crate::ops::stats::Upgrade;
        match self {
            ProxyError::BadRequest(_)
            | ProxyError::BodyTooLarge
            | ProxyError::ClientIo(_)
            | ProxyError::ClientTimeout
            | ProxyError::ClientTooSlow => Upgrade::ClientError,
            ProxyError::Dns(..)
            | ProxyError::Connect(_)
            | ProxyError::PoolExhausted
            | ProxyError::NoMember(_)
            | ProxyError::TlsHandshake(_)
            | ProxyError::TlsNotEnabled => Upgrade::ConnectError,
            ProxyError::BackendTimeout => Upgrade::Timeout,
            ProxyError::BackendClosed
            | ProxyError::BackendIo(_)
            | ProxyError::BadResponse(_)
            | ProxyError::NotHttp1
            | ProxyError::BackendBareCr
            | ProxyError::BadUpgrade(_)
            | ProxyError::TooManyInterim => Upgrade::BackendError,
            ProxyError::ErrorOverride(_) => Upgrade::Refused,
        }
    }
}

/// A request that could not be proxied: what went wrong, and whether the
/// client has already had (part of) an answer, so that it gets no second.
#[derive(Debug)]
pub struct Failure {
    pub error: ProxyError,
    pub answered: bool,
}

impl Failure {
    /// Before anything was sent to the client: it can still get a status.
    pub fn before(error: impl Into<ProxyError>) -> Failure {
        Failure {
            error: error.into(),
            answered: false,
        }
    }

    /// After the client got (part of) an answer: the connection is cut.
    pub fn after(error: impl Into<ProxyError>) -> Failure {
        Failure {
            error: error.into(),
            answered: true,
        }
    }

    /// A write to the client failed.
    pub fn client(e: std::io::Error, answered: bool) -> Failure {
        Failure {
            error: ProxyError::ClientIo(e.to_string()),
            answered,
        }
    }
}

/// What of a backend's answer `ProxyErrorOverride` keeps, as Apache: the
/// status line, and a 401's `WWW-Authenticate`.
#[derive(Debug)]
pub struct Overridden {
    pub status: u16,
    pub reason: String,
    pub authenticate: Option<String>,
}

/// The answer to give the client, if it can still get one.
pub struct Answer<'a> {
    pub status: u16,
    pub reason: &'a str,
    /// A field of its own (`ProxyErrorOverride`'s `WWW-Authenticate`).
    pub extra: Option<(&'static str, &'a str)>,
}

impl ProxyError {
    pub fn answer(&self) -> Option<Answer<'_>> {
        if let ProxyError::ErrorOverride(o) = self {
            return Some(Answer {
                status: o.status,
                reason: &o.reason,
                extra: o.authenticate.as_deref().map(|a| ("WWW-Authenticate", a)),
            });
        }
        use ProxyError::*;
        let (status, reason) = match self {
            BadRequest(_) => (400, "Bad Request"),
            BodyTooLarge => (413, "Content Too Large"),
            ClientIo(_) | ClientTimeout => return None,
            ClientTooSlow => (408, "Request Timeout"),
            Connect(_) | PoolExhausted | NoMember(_) => (503, "Service Unavailable"),
            TlsHandshake(_) | Dns(..) => (500, "Proxy Error"),
            BackendTimeout | BackendClosed | BackendIo(_) | BadUpgrade(_) | TooManyInterim
            | NotHttp1 => (502, "Proxy Error"),
            BadResponse(_) => (502, "Bad Gateway"),
            BackendBareCr => (500, "Internal Server Error"),
            TlsNotEnabled => (500, "Internal Server Error"),
            ErrorOverride(_) => return None,
        };
        Some(Answer {
            status,
            reason,
            extra: None,
        })
    }

    /// Whether the backend, not the client, failed (for the error log level).
    pub fn is_backend(&self) -> bool {
        !matches!(
            self,
            ProxyError::BadRequest(_)
                | ProxyError::BodyTooLarge
                | ProxyError::ClientIo(_)
                | ProxyError::ClientTimeout
                | ProxyError::ClientTooSlow
                | ProxyError::ErrorOverride(_)
        )
    }
}

impl From<crate::upstream::ConnectError> for ProxyError {
    fn from(e: crate::upstream::ConnectError) -> Self {
        use crate::upstream::ConnectError;
        match e {
            ConnectError::Dns(host, why) => ProxyError::Dns(host, why),
            ConnectError::Refused(why) => ProxyError::Connect(why),
            ConnectError::TlsHandshake(why) => ProxyError::TlsHandshake(why),
        }
    }
}
