//! mod_proxy's settings about what a proxied exchange carries besides the
//! request and the answer themselves: `ProxyVia`; and whether a backend's
//! error answer is replaced (`ProxyErrorOverride`).

/// `ProxyVia Off|On|Full|Block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Via {
    /// A client's `Via` goes to the backend as it came; none is added.
    #[default]
    Off,
    /// `Via: 1.1 NAME[:PORT]` joins the request's list and is added to
    /// the answer.
    On,
    /// As `On`, with the server's product in a comment.
    Full,
    /// The request's `Via` is removed; none is added.
    Block,
}

/// `ProxyErrorOverride On|Off [CODE ...]` of one level (server or
/// `<Location>`): as Apache merges them, the last level that says On or
/// Off decides, and the codes of every level count together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorOverride {
    pub on: Option<bool>,
    /// Empty: every 4xx and 5xx.
    pub codes: Vec<u16>,
}

impl ErrorOverride {
    /// This level over `base` (a virtual host's over the main server's).
    pub fn over(&self, base: &ErrorOverride) -> ErrorOverride {
        ErrorOverride {
            on: self.on.or(base.on),
            codes: base.codes.iter().chain(&self.codes).copied().collect(),
        }
    }

    /// Whether a backend's answer with `status` is replaced by the
    /// server's own error page, given the levels that apply in order.
    pub fn replaces<'a>(
        levels: impl Iterator<Item = &'a ErrorOverride> + Clone,
        status: u16,
    ) -> bool {
        let on = levels.clone().filter_map(|l| l.on).last() == Some(true);
        let mut codes = levels.flat_map(|l| &l.codes).peekable();
        let error = (400..600).contains(&status);
        on && error && (codes.peek().is_none() || codes.any(|&c| c == status))
    }
}
