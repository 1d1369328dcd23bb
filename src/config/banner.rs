//! The core's `ServerTokens`, `ServerSignature` and `ServerAdmin`: what
//! wsgate's own answers say about it.

use super::directives::arg;
use super::error::ConfigError;
use super::lexer::Node;
use super::model::identity::{ServerSignature, ServerTokens};
use super::{At, Builder};
/// `ServerTokens Prod[uctOnly]|Major|Minor|Min[imal]|OS|Full`: one value
/// for the whole process, as in Apache (the last line wins).
pub(super) fn server_tokens(
    b: &mut Builder,
    _: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let v = arg(node);
    let is = |w: &str| v.eq_ignore_ascii_case(w);
    b.server_tokens = if is("OS") {
        ServerTokens::Os
    } else if is("Min") || is("Minimal") {
        ServerTokens::Minimal
    } else if is("Major") {
        ServerTokens::Major
    } else if is("Minor") {
        ServerTokens::Minor
    } else if is("Prod") || is("ProductOnly") {
        ServerTokens::Prod
    } else if is("Full") {
        ServerTokens::Full
    } else {
        return Err(ConfigError::new(
            &node.origin,
            format!("ServerTokens '{v}': takes 1 argument: 'Prod(uctOnly)', 'Major', 'Minor', 'Min(imal)', 'OS', or 'Full'"),
        ));
    };
    Ok(())
}

/// `ServerSignature On|Off|EMail`, per server and `<Location>`.
pub(super) fn server_signature(
    _: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    let v = arg(node);
    let slot = match &mut at.location {
        Some(loc) => &mut loc.signature,
        None => &mut at.server.signature,
    };
    *slot = Some(if v.eq_ignore_ascii_case("on") {
        ServerSignature::On
    } else if v.eq_ignore_ascii_case("off") {
        ServerSignature::Off
    } else if v.eq_ignore_ascii_case("email") {
        ServerSignature::Email
    } else {
        return Err(ConfigError::new(
            &node.origin,
            format!("ServerSignature '{v}': use one of: off | on | email"),
        ));
    });
    Ok(())
}

/// `ServerAdmin ADDRESS`: the address `ServerSignature EMail` links to.
pub(super) fn server_admin(
    _: &mut Builder,
    at: &mut At<'_>,
    node: &Node,
) -> Result<(), ConfigError> {
    at.server.admin = Some(arg(node).to_string());
    Ok(())
}
