//! What wsgate says about itself in the answers it makes (`ServerTokens`,
//! `ServerSignature`, `ServerAdmin`), and how long a client may take to
//! send a request (mod_reqtimeout's `RequestReadTimeout`).

use std::num::NonZeroU32;
use std::time::Duration;

/// `ServerTokens`: how much the `Server` field of wsgate's own answers,
/// and its error pages' signature, tell. Apache's words; wsgate's name and
/// version stand where Apache's are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ServerTokens {
    /// `Prod`: `wsgate`.
    Prod,
    /// `Major`: `wsgate/0`.
    Major,
    /// `Minor`: `wsgate/0.1`.
    Minor,
    /// `Min`: `wsgate/0.1.0`.
    Minimal,
    /// `OS`: `wsgate/0.1.0 (Unix)`.
    Os,
    /// `Full` (Apache's default): as `OS`, wsgate having no modules that
    /// add a word of their own.
    #[default]
    Full,
}

/// The platform word Apache's `OS` and `Full` banners carry (`Unix` for
/// any Unix Apache builds itself; Debian's package patches it to `Debian`).
pub const PLATFORM: &str = "Unix";

impl ServerTokens {
    /// The `Server` field's value for wsgate `version` (`MAJOR.MINOR.PATCH`).
    pub fn banner(self, version: &str) -> String {
        let mut parts = version.split('.');
        let major = parts.next().unwrap_or("0");
        let minor = parts.next().unwrap_or("0");
        match self {
            ServerTokens::Prod => "wsgate".to_string(),
            ServerTokens::Major => format!("wsgate/{major}"),
            ServerTokens::Minor => format!("wsgate/{major}.{minor}"),
            ServerTokens::Minimal => format!("wsgate/{version}"),
            ServerTokens::Os | ServerTokens::Full => format!("wsgate/{version} ({PLATFORM})"),
        }
    }
}

/// `ServerSignature`: the line at the foot of wsgate's error pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ServerSignature {
    /// No line (the default).
    #[default]
    Off,
    /// `<address>BANNER Server at HOST Port PORT</address>`.
    On,
    /// The same with the host a `mailto:` link to `ServerAdmin`.
    Email,
}

/// A server's signature settings: `ServerSignature` and the `ServerAdmin`
/// its `EMail` form links to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signature {
    pub mode: ServerSignature,
    /// `ServerAdmin`; Apache's `[no address given]` when unset.
    pub admin: Option<String>,
}

/// Apache's `ServerAdmin` when none is written.
pub const NO_ADMIN: &str = "[no address given]";

/// One stage of `RequestReadTimeout`: the time a client has to send the
/// TLS handshake, a request head or a body, counted from the first read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadStage {
    /// Zero: the stage has no limit of its own (`Timeout` still bounds
    /// each read).
    pub timeout: Duration,
    /// How far `min_rate` may push the limit (`None`: without end).
    pub max: Option<Duration>,
    /// `MinRate`: each byte received moves the limit later by
    /// 1/`min_rate` of a second.
    pub min_rate: Option<NonZeroU32>,
}

impl ReadStage {
    pub const OFF: ReadStage = ReadStage {
        timeout: Duration::ZERO,
        max: None,
        min_rate: None,
    };

    pub fn is_off(&self) -> bool {
        self.timeout.is_zero()
    }
}

/// `RequestReadTimeout`, merged for one server. mod_reqtimeout's defaults
/// hold where it is not written (`handshake=0 header=20-40,MinRate=500
/// body=20,MinRate=500`), as with the module loaded, as Debian loads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadTimeouts {
    pub handshake: ReadStage,
    pub header: ReadStage,
    pub body: ReadStage,
}

const RATE_500: Option<NonZeroU32> = NonZeroU32::new(500);

impl Default for ReadTimeouts {
    fn default() -> Self {
        ReadTimeouts {
            handshake: ReadStage::OFF,
            header: ReadStage {
                timeout: Duration::from_secs(20),
                max: Some(Duration::from_secs(40)),
                min_rate: RATE_500,
            },
            body: ReadStage {
                timeout: Duration::from_secs(20),
                max: None,
                min_rate: RATE_500,
            },
        }
    }
}

impl ReadTimeouts {
    /// mod_reqtimeout leaves a connection alone when its server sets no
    /// stage (a handshake stage counts only when set).
    pub fn any(&self) -> bool {
        !(self.handshake.is_off() && self.header.is_off() && self.body.is_off())
    }
}

/// mod_proxy's `ProxyStatus`: whether the server-status page shows the
/// balancers and their members, and how much of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProxyStatus {
    /// Nothing (the default).
    #[default]
    Off,
    /// A table per balancer: each member's scheme, host, status, route
    /// and redirect, load factor, set and traffic.
    On,
    /// `Full`: mod_proxy prints the same as for On.
    Full,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_server_tokens_word_tells_as_much_as_apaches() {
        let v = "1.22.3";
        assert_eq!(ServerTokens::Prod.banner(v), "wsgate");
        assert_eq!(ServerTokens::Major.banner(v), "wsgate/1");
        assert_eq!(ServerTokens::Minor.banner(v), "wsgate/1.22");
        assert_eq!(ServerTokens::Minimal.banner(v), "wsgate/1.22.3");
        assert_eq!(ServerTokens::Os.banner(v), "wsgate/1.22.3 (Unix)");
        assert_eq!(ServerTokens::Full.banner(v), "wsgate/1.22.3 (Unix)");
    }
}
