//! Every directive wsgate reads, in one table: its name, the Apache module
//! whose meaning it keeps, where it may be written, its syntax, a line of
//! help, and the function that reads it into the configuration. The
//! dispatcher checks the context, the section form and a single argument
//! from the table, so the handlers only read values; `-t`'s "did you mean"
//! hints, the module list `<IfModule>` tests and the README's directive
//! table all come from here.

use super::error::{self, ConfigError};
use super::lexer::Node;
use super::model::Written;
use super::{
    accesslog, auth, balancer, banner, core, errordoc, headers, http2, liveness, proxy,
    proxy_extras, remoteip, reqtimeout, require, rewrite, ssl, static_files as files, unixd, At,
    Builder,
};

/// Where a directive is written.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scope {
    Server,
    VirtualHost,
    Location,
    LocationMatch,
    /// Inside `<Proxy balancer://…>`.
    Proxy,
    /// `<Directory>` or `<DirectoryMatch>`.
    Directory,
    /// `<Files>` or `<FilesMatch>`.
    Files,
}

impl Scope {
    pub fn describe(self) -> &'static str {
        match self {
            Scope::Server => "the server config",
            Scope::VirtualHost => "<VirtualHost>",
            Scope::Location => "<Location>",
            Scope::LocationMatch => "<LocationMatch>",
            Scope::Proxy => "<Proxy>",
            Scope::Directory => "<Directory>",
            Scope::Files => "<Files>",
        }
    }

    #[cfg(test)]
    fn short(self) -> &'static str {
        match self {
            Scope::Server => "server",
            Scope::VirtualHost => "vhost",
            Scope::Location => "Location",
            Scope::LocationMatch => "LocationMatch",
            Scope::Proxy => "Proxy",
            Scope::Directory => "Directory",
            Scope::Files => "Files",
        }
    }
}

/// Reads one directive into the configuration being built.
pub(crate) type Apply = fn(&mut Builder, &mut At<'_>, &Node) -> Result<(), ConfigError>;

/// One directive.
pub struct Directive {
    pub name: &'static str,
    /// The Apache module whose meaning it keeps (`core` for the core).
    pub module: &'static str,
    pub scopes: &'static [Scope],
    pub syntax: &'static str,
    /// What wsgate does with it, in a line.
    pub help: &'static str,
    /// Written as `<Name …>` … `</Name>`.
    pub section: bool,
    /// Takes exactly one argument (checked before `apply`).
    pub one_arg: bool,
    /// Offered in "did you mean" hints (not for aliases and directives
    /// recognised only to explain their refusal).
    pub suggested: bool,
    /// `None`: read while the files are read (`include`), before the
    /// configuration is built.
    pub(crate) apply: Option<Apply>,
}

use Scope::{
    Directory as D, Files as F, Location as L, LocationMatch as LM, Proxy as P, Server as S,
    VirtualHost as V,
};

const SERVER: &[Scope] = &[S];
const SERVER_VHOST: &[Scope] = &[S, V];
const VHOST: &[Scope] = &[V];
const ANYWHERE: &[Scope] = &[S, V, L, LM];
const WITH_LOCATION: &[Scope] = &[S, V, L];
const BALANCER: &[Scope] = &[S, V, P];
const RULES: &[Scope] = &[S, V, L, LM, P];
const ACCESS: &[Scope] = &[L, LM, P, D, F];
const DIRECTORY: &[Scope] = &[S, V, D];
const LOCATION: &[Scope] = &[L, LM];
const EVERY_SECTION: &[Scope] = &[S, V, L, LM, D, F];
const DIRECTORY_LOCATION: &[Scope] = &[S, V, L, LM, D];
/// mod_rewrite: server, vhost and per directory.
const REWRITING: &[Scope] = &[S, V, L, LM, D];
const PER_DIRECTORY: &[Scope] = &[L, LM, D];

/// A directive with the usual defaults: one line, any number of
/// arguments, suggested in hints.
const fn line(
    name: &'static str,
    module: &'static str,
    scopes: &'static [Scope],
    syntax: &'static str,
    help: &'static str,
    apply: Apply,
) -> Directive {
    Directive {
        name,
        module,
        scopes,
        syntax,
        help,
        section: false,
        one_arg: false,
        suggested: true,
        apply: Some(apply),
    }
}

/// A directive that takes exactly one argument.
const fn one(
    name: &'static str,
    module: &'static str,
    scopes: &'static [Scope],
    syntax: &'static str,
    help: &'static str,
    apply: Apply,
) -> Directive {
    Directive {
        one_arg: true,
        ..line(name, module, scopes, syntax, help, apply)
    }
}

const fn section(
    name: &'static str,
    module: &'static str,
    scopes: &'static [Scope],
    syntax: &'static str,
    help: &'static str,
    apply: Apply,
) -> Directive {
    Directive {
        section: true,
        ..line(name, module, scopes, syntax, help, apply)
    }
}

/// A directive `include` handles while reading the files.
const fn read_time(
    name: &'static str,
    module: &'static str,
    syntax: &'static str,
    help: &'static str,
    section: bool,
) -> Directive {
    Directive {
        name,
        module,
        scopes: &[S, V, L, LM, P],
        syntax,
        help,
        section,
        one_arg: false,
        suggested: true,
        apply: None,
    }
}

const fn unlisted(d: Directive) -> Directive {
    Directive {
        suggested: false,
        ..d
    }
}

/// Every directive wsgate reads, by module.
pub const DIRECTIVES: &[Directive] = &[
    // core
    line("Listen", "core", SERVER, "Listen [IP:]PORT [http|https]", "where to accept connections; port 0 takes a free port (see `--print-listen`)", core::listen),
    one("ServerName", "core", SERVER_VHOST, "ServerName [scheme://]NAME[:port]", "the server's name, for choosing a vhost and X-Forwarded-Server", core::server_name),
    line("ServerAlias", "core", VHOST, "ServerAlias NAME ...", "more names of a vhost (`*` and `?` wildcards)", core::server_alias),
    read_time("ServerRoot", "core", "ServerRoot DIRECTORY", "where relative paths start", false),
    section("VirtualHost", "core", SERVER, "<VirtualHost IP:PORT|*:PORT ...>", "name-based virtual hosts; the first of an address is its default", core::virtual_host),
    section("Location", "core", SERVER_VHOST, "<Location PATH> or <Location ~ REGEX>", "settings for a URL path prefix (or a regex)", core::location),
    section("LocationMatch", "core", SERVER_VHOST, "<LocationMatch REGEX>", "settings for URL paths matching a regex", core::location),
    read_time("Include", "core", "Include PATH|GLOB|DIRECTORY", "reads more files (an error if none matches)", false),
    read_time("IncludeOptional", "core", "IncludeOptional PATH|GLOB|DIRECTORY", "reads more files, if any match", false),
    read_time("IfModule", "core", "<IfModule [!]MODULE>", "true for the modules wsgate has", true),
    read_time("IfDefine", "core", "<IfDefine [!]NAME>", "true when NAME is defined (`Define`, `-D`)", true),
    read_time("Define", "core", "Define NAME [VALUE]", "a name for `<IfDefine>` and `${NAME}`", false),
    read_time("UnDefine", "core", "UnDefine NAME", "forgets a Define", false),
    read_time("LoadModule", "mod_so", "LoadModule MODULE FILE", "accepted, no effect: the modules are built in", false),
    one("Timeout", "core", SERVER_VHOST, "Timeout SECONDS", "client timeout, and the backend timeout when nothing more precise is set (units ms, s, mi, h)", core::timeout),
    one("KeepAlive", "core", SERVER, "KeepAlive On|Off", "keep client connections open between requests", core::keepalive),
    one("KeepAliveTimeout", "core", SERVER, "KeepAliveTimeout SECONDS", "how long an idle client connection waits for its next request", core::keepalive_timeout),
    one("MaxKeepAliveRequests", "core", SERVER, "MaxKeepAliveRequests N", "a client connection closes after its Nth request's answer following the first (0: never; 100 when unset)", core::max_keepalive_requests),
    one("TraceEnable", "core", SERVER_VHOST, "TraceEnable On|Off", "Off answers TRACE with 405 instead of proxying it", core::trace_enable),
    one("ServerTokens", "core", SERVER, "ServerTokens Prod|Major|Minor|Min|OS|Full", "how much the Server field of wsgate's own answers and its error pages' signature tell: wsgate, wsgate/0, wsgate/0.1, wsgate/0.1.0, or that and (Unix) (OS and Full, the default)", banner::server_tokens),
    one("ServerSignature", "core", ANYWHERE, "ServerSignature On|Off|EMail", "a line at the foot of wsgate's error pages, status page and balancer manager: the ServerTokens banner, the host and port (EMail: the host links to ServerAdmin); Off by default; a <Location>'s holds for its paths", banner::server_signature),
    one("ServerAdmin", "core", SERVER_VHOST, "ServerAdmin EMAIL|URL", "the address ServerSignature EMail links to", banner::server_admin),
    line("RequestReadTimeout", "mod_reqtimeout", SERVER_VHOST, "RequestReadTimeout [handshake=T[-MAX][,MinRate=R]] [header=…] [body=…]", "how long a client may take over its TLS handshake, request head and body, extended by MinRate bytes per second up to MAX (header=20-40,MinRate=500 body=20,MinRate=500 when unset; 0 turns a stage off); a head too slow is closed (408 once its request line came), a body too slow gets 408", reqtimeout::request_read_timeout),
    one("HostnameLookups", "core", SERVER_VHOST, "HostnameLookups Off", "client names are never looked up (On and Double are refused)", core::hostname_lookups),
    one("LimitRequestLine", "core", SERVER, "LimitRequestLine BYTES", "longest request line (414 beyond)", core::limit),
    one("LimitRequestFieldSize", "core", SERVER, "LimitRequestFieldSize BYTES", "longest header line (400 beyond)", core::limit),
    one("LimitRequestFields", "core", SERVER, "LimitRequestFields N", "most header fields (400 beyond; 0: no limit)", core::limit),
    one("LimitRequestBody", "core", SERVER, "LimitRequestBody BYTES", "largest request body (413 beyond; 0: no limit)", core::limit),
    one("GracefulShutdownTimeout", "mpm", SERVER, "GracefulShutdownTimeout SECONDS", "how long a graceful stop waits for requests and tunnels (0: for ever; 10 when unset)", core::graceful_shutdown),
    one("MaxRequestWorkers", "mpm", SERVER, "MaxRequestWorkers N", "most client connections at once, tunnels included; more wait in the listen backlog", core::max_request_workers),
    unlisted(one("MaxClients", "mpm", SERVER, "MaxClients N", "the old name of MaxRequestWorkers", core::max_request_workers)),
    one("ErrorLog", "core", SERVER, "ErrorLog FILE", "where the log goes (standard error when unset); reopened on reload", core::error_log),
    line("LogFormat", "mod_log_config", SERVER_VHOST, "LogFormat FORMAT [NICKNAME]", "an access log format, named or the default for TransferLog; Apache's codes, plus wsgate's notes for tunnels (%{wsgate-...}n)", accesslog::log_format),
    line("CustomLog", "mod_log_config", SERVER_VHOST, "CustomLog FILE|\"|PROGRAM\" FORMAT|NICKNAME [env=[!]VAR|expr=EXPR]", "an access log: a line per request, and per tunnel when it ends; written off the request path, reopened on reload", accesslog::custom_log),
    one("TransferLog", "mod_log_config", SERVER_VHOST, "TransferLog FILE|\"|PROGRAM\"", "an access log in the last LogFormat without a nickname (the Common Log Format by default)", accesslog::transfer_log),
    line("GlobalLog", "mod_log_config", SERVER, "GlobalLog FILE|\"|PROGRAM\" FORMAT|NICKNAME [env=[!]VAR|expr=EXPR]", "an access log every virtual host writes to, even one with its own", accesslog::custom_log),
    one("BufferedLogs", "mod_log_config", SERVER, "BufferedLogs On|Off", "accepted: lines always go through a bounded buffer written off the request path", accesslog::buffered_logs),
    line("LogLevel", "core", SERVER, "LogLevel LEVEL [MODULE:LEVEL ...]", "how much is logged (per-module levels apply to the whole process)", core::log_level),
    one("SetHandler", "core", LOCATION, "SetHandler server-status|balancer-manager|wsgate-metrics|none", "answers requests no ProxyPass or [P] rule proxies with a page of wsgate's own: mod_status's (`?auto` for machines), the balancer manager, or Prometheus metrics (wsgate-metrics, an extension: inside <IfModule wsgate_module>)", require::set_handler),
    one("ExtendedStatus", "core", SERVER, "ExtendedStatus On|Off", "the request and traffic totals on the server-status page (On by default, as with mod_status loaded)", require::extended_status),
    one("User", "mod_unixd", SERVER, "User NAME|#UID", "started as root, wsgate binds its ports, opens its logs and reads its keys, then serves as this user; a privileged helper process opens what a reload needs (never root: an error, as in Apache)", unixd::user),
    one("Group", "mod_unixd", SERVER, "Group NAME|#GID", "the group to serve as, with User (the user's own group when unset)", unixd::group),
    one("PidFile", "core", SERVER, "PidFile FILE", "written at start, removed at exit", core::pid_file),
    // static files: core, mod_alias, mod_dir, mod_mime, mod_autoindex
    one("DocumentRoot", "core", SERVER_VHOST, "DocumentRoot DIRECTORY", "where requests no ProxyPass, [P] rule, Alias or SetHandler takes find their files (none when unset: 404)", files::document_root),
    section("Directory", "core", SERVER_VHOST, "<Directory PATH> or <Directory ~ REGEX>", "settings for files in a directory and below (wildcards match one component), fewest components first", files::section),
    section("DirectoryMatch", "core", SERVER_VHOST, "<DirectoryMatch REGEX>", "settings for directories whose path matches, after the <Directory> sections", files::section),
    section("Files", "core", SERVER_VHOST, "<Files NAME> or <Files ~ REGEX>", "settings for files by name (wildcards), after <Directory>", files::section),
    section("FilesMatch", "core", SERVER_VHOST, "<FilesMatch REGEX>", "settings for files whose name matches", files::section),
    line("Options", "core", DIRECTORY_LOCATION, "Options [+|-]Indexes|FollowSymLinks|SymLinksIfOwnerMatch|MultiViews|None|All ...", "Indexes: a listing for a directory without an index file (403 otherwise); FollowSymLinks (the default): symbolic links are followed; SymLinksIfOwnerMatch: only to a file of the link's owner (both only in <Directory>, as in Apache: a <Location>'s Options change Indexes); MultiViews: a missing name is negotiated among name.* files as mod_negotiation does (Vary, Content-Location, TCN; 406 with Alternates; type maps answer 500). ExecCGI, Includes are refused, but in a <Directory> no folder matches at start (a warning)", files::options),
    line("ErrorDocument", "core", EVERY_SECTION, "ErrorDocument CODE \"message\"|/local/url-path|URL|default", "what wsgate sends instead of its own page for a 4xx or 5xx it makes itself: the message (as text/html), a GET of the local url-path answered internally (a file or a proxied path; the status stays unless a backend answers it), or a 302 to the URL (ignored for 401, as Apache does); a <Location>'s wins over a <Directory>'s", errordoc::error_document),
    one("EnableSendfile", "core", EVERY_SECTION, "EnableSendfile On|Off", "accepted: it chooses how Apache moves a file's bytes to the socket; wsgate always reads a file in 64 KiB pieces and writes them (no sendfile), so what is served is the same either way", files::enable_sendfile),
    line("AllowOverride", "core", DIRECTORY, "AllowOverride None", "None: wsgate reads no .htaccess files; anything else is an error (ignoring them could let in whom they keep out) but in a <Directory> under whose folders no .htaccess file exists at start and wsgate serves no file (a warning)", files::allow_override),
    line("AllowOverrideList", "core", DIRECTORY, "AllowOverrideList None", "None only, as AllowOverride", files::allow_override),
    one("AddDefaultCharset", "core", SERVER_VHOST, "AddDefaultCharset On|Off|CHARSET", "a charset for text/plain and text/html files that have none", files::add_default_charset),
    line("Alias", "mod_alias", SERVER_VHOST, "Alias URL-PATH FILE|DIRECTORY", "serves a url-path from elsewhere in the file system (checked after ProxyPass)", files::alias),
    line("AliasMatch", "mod_alias", SERVER_VHOST, "AliasMatch REGEX FILE|DIRECTORY", "Alias by regex ($0-$9 in the path)", files::alias),
    line("Redirect", "mod_alias", SERVER_VHOST, "Redirect [permanent|temp|seeother|gone|STATUS] URL-PATH [URL]", "redirects a url-path prefix (302 by default); the rest of the path and the query follow", files::redirect),
    line("RedirectMatch", "mod_alias", SERVER_VHOST, "RedirectMatch [STATUS] REGEX [URL]", "Redirect by regex ($0-$9 in the url)", files::redirect),
    line("RedirectPermanent", "mod_alias", SERVER_VHOST, "RedirectPermanent URL-PATH URL", "Redirect permanent", files::redirect),
    line("RedirectTemp", "mod_alias", SERVER_VHOST, "RedirectTemp URL-PATH URL", "Redirect temp", files::redirect),
    line("ScriptAlias", "mod_alias", SERVER_VHOST, "ScriptAlias URL-PATH DIRECTORY", "mapped as Apache maps it, but wsgate runs no CGI programs: a file there answers 500 (logged; never its source), a missing one 404, a folder 403; a warning at start names the line and the programs in the folder", files::alias),
    line("ScriptAliasMatch", "mod_alias", SERVER_VHOST, "ScriptAliasMatch REGEX DIRECTORY", "ScriptAlias by regex ($0-$9 in the path)", files::alias),
    line("DirectoryIndex", "mod_dir", DIRECTORY, "DirectoryIndex NAME ...|disabled", "the files tried, in order, for a url ending in / (index.html by default)", files::directory_index),
    one("DirectorySlash", "mod_dir", DIRECTORY, "DirectorySlash On|Off", "a directory asked for without its trailing slash is redirected to it (301; On by default)", files::directory_slash),
    one("FallbackResource", "mod_dir", DIRECTORY, "FallbackResource URL-PATH|disabled", "what answers for a file that does not exist (a single-page application's index)", files::fallback_resource),
    one("TypesConfig", "mod_mime", SERVER, "TypesConfig FILE", "the Content-Type of files by extension, in mime.types' format (e.g. /etc/mime.types)", files::types_config),
    line("AddType", "mod_mime", SERVER_VHOST, "AddType MEDIA-TYPE EXTENSION ...", "a Content-Type for files with these extensions", files::add_mime),
    line("AddCharset", "mod_mime", SERVER_VHOST, "AddCharset CHARSET EXTENSION ...", "a charset parameter for files with these extensions", files::add_mime),
    line("AddEncoding", "mod_mime", SERVER_VHOST, "AddEncoding ENCODING EXTENSION ...", "a Content-Encoding for files with these extensions", files::add_mime),
    line("AddLanguage", "mod_mime", SERVER_VHOST, "AddLanguage LANGUAGE EXTENSION ...", "a Content-Language for files with these extensions", files::add_mime),
    line("AddHandler", "mod_mime", SERVER_VHOST, "AddHandler HANDLER EXTENSION ...", "files with these extensions need a handler wsgate does not have (a type map, a CGI program): they are refused (403), never sent as they are", files::add_mime),
    one("MultiviewsMatch", "mod_mime", DIRECTORY, "MultiviewsMatch NegotiatedOnly", "NegotiatedOnly only (the default): a MultiViews variant's every extension must give a type, language, charset or encoding", files::multiviews_match),
    one("MIMEMagicFile", "mod_mime_magic", SERVER_VHOST, "MIMEMagicFile FILE", "read and ignored, with a warning: a file without a known extension is sent without a Content-Type instead of one guessed from its first bytes (the same bytes, to the same clients)", files::mime_magic_file),
    line("UserDir", "mod_userdir", SERVER_VHOST, "UserDir disabled [USER ...] | enabled USER ...", "disabled only: /~user/ serves nothing (Apache 2.4's default too); a folder (public_html) is refused", files::user_dir),
    line("LanguagePriority", "mod_negotiation", SERVER_VHOST, "LanguagePriority LANGUAGE ...", "Options MultiViews: the languages preferred, in order, when the request's Accept-Language leaves a tie (or names none)", files::negotiation),
    line("ForceLanguagePriority", "mod_negotiation", SERVER_VHOST, "ForceLanguagePriority None|Prefer|Fallback ...", "Options MultiViews: LanguagePriority breaks ties (Prefer, the default) and picks a variant when no language is acceptable (Fallback) instead of 406", files::negotiation),
    one("CacheNegotiatedDocs", "mod_negotiation", SERVER_VHOST, "CacheNegotiatedDocs On|Off", "read: it changes only a type map's answer to an HTTP/1.0 client (Expires), and wsgate reads no type maps; a MultiViews answer is never marked expired, in Apache either", files::negotiation),
    line("IndexIgnore", "mod_autoindex", SERVER_VHOST, "IndexIgnore PATTERN ...", "names directory listings leave out (wildcards)", files::index_ignore),
    // mod_deflate, mod_filter
    line("AddOutputFilterByType", "mod_filter", ANYWHERE, "AddOutputFilterByType DEFLATE MEDIA-TYPE ...", "compresses answers of these types (gzip) for clients that take it: proxied answers and files, never a 101 or a tunnel", headers::output_filter),
    one("SetOutputFilter", "core", ANYWHERE, "SetOutputFilter DEFLATE", "compresses answers of every type (gzip) for clients that take it", headers::output_filter),
    one("DeflateCompressionLevel", "mod_deflate", SERVER, "DeflateCompressionLevel 1-9", "how hard gzip works (6 when unset)", core::deflate_level),
    // mod_authz_core, mod_authz_host
    line("Require", "mod_authz_core", ACCESS, "Require [not] all granted|denied / ip ADDRESS ... / local / host NAME ... / env VAR ... / method NAME ... / expr EXPRESSION / valid-user / user NAME ...", "who may make the request; several lines: any one of them (403 otherwise, or 401 where a user could still be let in)", require::require),
    section("RequireAll", "mod_authz_core", ACCESS, "<RequireAll>", "every Require inside must grant and none refuse (`Require not …` refuses)", require::require_section),
    section("RequireAny", "mod_authz_core", ACCESS, "<RequireAny>", "one Require inside must grant", require::require_section),
    section("RequireNone", "mod_authz_core", ACCESS, "<RequireNone>", "no Require inside may grant (inside <RequireAll>)", require::require_section),
    // mod_access_compat
    one("Order", "mod_access_compat", ACCESS, "Order Deny,Allow|Allow,Deny|Mutual-failure", "which of Allow and Deny wins when both match (Deny,Allow when unset)", auth::order),
    line("Allow", "mod_access_compat", ACCESS, "Allow from all|ADDRESS|NETWORK|HOST|env=[!]VAR ...", "clients let in by address, network (10.1, 10.0.0.0/8, 10.0.0.0/255.0.0.0), host name or variable", auth::allow_deny),
    line("Deny", "mod_access_compat", ACCESS, "Deny from all|ADDRESS|NETWORK|HOST|env=[!]VAR ...", "clients refused, as Allow names them", auth::allow_deny),
    one("Satisfy", "mod_access_compat", ACCESS, "Satisfy All|Any", "Any: passing Allow/Deny is enough, else a user may still log in; All (the default): both must pass", auth::satisfy),
    // mod_authn_core, mod_auth_basic, mod_authn_file
    one("AuthType", "mod_authn_core", ACCESS, "AuthType Basic|None", "ask for a user and password (HTTP Basic, RFC 7617) where Require needs a user", auth::auth_type),
    one("AuthName", "mod_authn_core", ACCESS, "AuthName REALM", "the realm named in the 401's WWW-Authenticate", auth::auth_name),
    line("AuthBasicProvider", "mod_auth_basic", ACCESS, "AuthBasicProvider file", "where users are looked up: the AuthUserFile (the default)", auth::auth_basic_provider),
    one("AuthUserFile", "mod_authn_file", ACCESS, "AuthUserFile FILE", "an htpasswd file (bcrypt, MD5 `$apr1$`, SHA-1 `{SHA}`, crypt and `$5$`/`$6$`), read for each request as Apache reads it", auth::auth_user_file),
    // mod_proxy
    line("ProxyPass", "mod_proxy", ANYWHERE, "ProxyPass [PATH] !|URL [key=value ...] [nocanon] [noquery]", "maps a path prefix to a backend url (ws, wss, http, https, balancer)", proxy::proxy_pass),
    line("ProxyPassMatch", "mod_proxy", ANYWHERE, "ProxyPassMatch [REGEX] !|URL [key=value ...]", "maps paths matching a regex ($0-$9 in the url)", proxy::proxy_pass),
    line("ProxyPassReverse", "mod_proxy", WITH_LOCATION, "ProxyPassReverse [PATH] URL", "rewrites Location, Content-Location, URI and Destination of responses", proxy::proxy_pass_reverse),
    line("ProxyPassReverseCookiePath", "mod_proxy", WITH_LOCATION, "ProxyPassReverseCookiePath BACKEND-PATH CLIENT-PATH", "a Set-Cookie's path= that starts with BACKEND-PATH becomes CLIENT-PATH (the whole value)", proxy_extras::cookie),
    line("ProxyPassReverseCookieDomain", "mod_proxy", WITH_LOCATION, "ProxyPassReverseCookieDomain BACKEND-DOMAIN CLIENT-DOMAIN", "a Set-Cookie's domain= that starts with BACKEND-DOMAIN (any case) becomes CLIENT-DOMAIN", proxy_extras::cookie),
    one("ProxyPreserveHost", "mod_proxy", ANYWHERE, "ProxyPreserveHost On|Off", "send the client's Host to the backend", proxy::proxy_flag),
    one("ProxyAddHeaders", "mod_proxy", ANYWHERE, "ProxyAddHeaders On|Off", "add X-Forwarded-For, -Host and -Server", proxy::proxy_flag),
    line("ProxyErrorOverride", "mod_proxy", WITH_LOCATION, "ProxyErrorOverride On|Off [CODE ...]", "On: a backend's 4xx or 5xx answer (or only those CODEs) is replaced by wsgate's own error page for that status", proxy_extras::error_override),
    one("ProxySourceAddress", "mod_proxy", SERVER_VHOST, "ProxySourceAddress ADDRESS", "connections to backends are made from this local address", proxy_extras::source_address),
    one("ProxyVia", "mod_proxy", SERVER_VHOST, "ProxyVia Off|On|Full|Block", "On and Full add `Via: 1.1 NAME[:PORT]` (Full: with wsgate's product) to the request's Via and to proxied answers; Block removes the client's Via", proxy_extras::via),
    one("ProxyTimeout", "mod_proxy", SERVER_VHOST, "ProxyTimeout SECONDS", "backend timeout when the worker sets none", proxy::proxy_timeout),
    one("ProxyStatus", "mod_proxy", SERVER_VHOST, "ProxyStatus Off|On|Full", "the server-status page shows each balancer and its members (as mod_proxy's status hook: On and Full alike; Off by default)", require::proxy_status),
    one("ProxyRequests", "mod_proxy", SERVER_VHOST, "ProxyRequests Off", "Off only: wsgate is no forward proxy", proxy::proxy_requests),
    section("Proxy", "mod_proxy", SERVER_VHOST, "<Proxy balancer://NAME>", "a balancer's members, parameters and header rules", balancer::proxy_section),
    line("BalancerMember", "mod_proxy_balancer", BALANCER, "BalancerMember [balancer://NAME] URL [key=value ...]", "a member of a balancer, with worker and member parameters", balancer::balancer_member),
    line("ProxySet", "mod_proxy", BALANCER, "ProxySet [balancer://NAME] key=value ...", "balancer parameters (lbmethod, stickysession, ...)", balancer::proxy_set),
    // mod_proxy_wstunnel
    one("WsgateWebSocketFrames", "wsgate", ANYWHERE, "WsgateWebSocketFrames On|Off", "(extension, inside <IfModule wsgate_module>) follow WebSocket tunnels' frame headers: a graceful stop, a balancer member set to Drain/Disabled/Stopped or a backend a reload removed sends Close 1001 at a frame boundary, spread over GracefulShutdownTimeout; the log gets the close code", proxy::proxy_flag),
    line("WsgateWebSocketPing", "wsgate", ANYWHERE, "WsgateWebSocketPing EVERY [WAIT]|Off", "(extension, inside <IfModule wsgate_module>) WebSocket liveness: a side of a tunnel from which nothing came for EVERY is sent a Ping, and the tunnel closes (dead-peer) when nothing comes from it within WAIT (default 10 s or EVERY if shorter); turns on WsgateWebSocketFrames for those tunnels", proxy::ws_ping),
    one("ProxyWebsocketFallbackToProxyHttp", "mod_proxy_wstunnel", ANYWHERE, "ProxyWebsocketFallbackToProxyHttp On|Off", "Off: the old mod_proxy_wstunnel behaviour for ws:// and wss:// targets", proxy::proxy_flag),
    // mod_proxy_hcheck
    line("ProxyHCExpr", "mod_proxy_hcheck", SERVER, "ProxyHCExpr NAME {EXPRESSION}", "a named condition on %{REQUEST_STATUS} for hcexpr=", balancer::proxy_hc_expr),
    // mod_ssl
    one("SSLEngine", "mod_ssl", SERVER_VHOST, "SSLEngine On|Off", "serve TLS to clients on this server's addresses (SNI picks the virtual host)", ssl::ssl_server),
    line("SSLCertificateFile", "mod_ssl", SERVER_VHOST, "SSLCertificateFile FILE", "the server's PEM certificate, optionally followed by its chain (repeat for RSA and ECDSA)", ssl::ssl_server),
    line("SSLCertificateKeyFile", "mod_ssl", SERVER_VHOST, "SSLCertificateKeyFile FILE", "the private key of the matching SSLCertificateFile (PKCS#1, PKCS#8, SEC1; not encrypted)", ssl::ssl_server),
    one("SSLCertificateChainFile", "mod_ssl", SERVER_VHOST, "SSLCertificateChainFile FILE", "intermediate certificates sent after the server's certificate", ssl::ssl_server),
    line("SSLProtocol", "mod_ssl", SERVER_VHOST, "SSLProtocol [+-]all|TLSv1.2|TLSv1.3 ...", "the TLS versions offered to clients (TLSv1.2 and TLSv1.3; older ones may only be removed)", ssl::ssl_server),
    line("SSLCipherSuite", "mod_ssl", SERVER_VHOST, "SSLCipherSuite [SSL|TLSv1.3] LIST", "the cipher suites offered, in OpenSSL's syntax; suites rustls lacks (DHE, CBC…) are left out with a warning", ssl::ssl_server),
    one("SSLHonorCipherOrder", "mod_ssl", SERVER_VHOST, "SSLHonorCipherOrder On|Off", "the server's cipher order wins over the client's", ssl::ssl_server),
    one("SSLSessionTickets", "mod_ssl", SERVER_VHOST, "SSLSessionTickets On|Off", "stateless session resumption (on by default)", ssl::ssl_server),
    one("SSLVHostSNIPolicy", "mod_ssl", SERVER, "SSLVHostSNIPolicy strict|secure|authonly|insecure", "whether a request's Host may select another TLS vhost than its SNI name did: never, when their TLS setups match (the default), when they ask the same of client certificates (always, in wsgate), always; otherwise 421", ssl::sni_policy),
    one("SSLUseStapling", "mod_ssl", SERVER_VHOST, "SSLUseStapling On|Off", "staple an OCSP response to the certificate: the one WsgateStaplingFile names (wsgate fetches none)", ssl::ssl_server),
    line("WsgateStaplingFile", "wsgate", SERVER_VHOST, "WsgateStaplingFile FILE", "(extension, inside <IfModule wsgate_module>) the DER OCSP response to staple for the matching SSLCertificateFile, checked at start and reload: successful, about that certificate, good, not expired", ssl::ssl_server),
    one("SSLStaplingCache", "mod_ssl", SERVER, "SSLStaplingCache TYPE", "accepted (Apache needs it for stapling); wsgate keeps the responses it reads from WsgateStaplingFile", ssl::stapling_cache),
    one("SSLStrictSNIVHostCheck", "mod_ssl", SERVER_VHOST, "SSLStrictSNIVHostCheck On|Off", "a client that sends no SNI name gets 403 from this server", ssl::ssl_server),
    line("SSLOpenSSLConfCmd", "mod_ssl", SERVER_VHOST, "SSLOpenSSLConfCmd Curves|Groups|DHParameters VALUE", "key exchange groups (X25519, P-256, P-384); DHParameters is accepted and unused (no DHE)", ssl::ssl_server),
    line("Protocols", "core", SERVER_VHOST, "Protocols h2|h2c|http/1.1 ...", "the protocols offered to clients: h2 (HTTP/2, by ALPN on TLS), h2c (HTTP/2 without TLS, by prior knowledge) and http/1.1", http2::protocols),
    one("H2WebSockets", "mod_http2", SERVER_VHOST, "H2WebSockets On|Off", "WebSockets over HTTP/2 streams (RFC 8441 extended CONNECT)", http2::h2_setting),
    one("H2MaxSessionStreams", "mod_http2", SERVER_VHOST, "H2MaxSessionStreams N", "streams open at once on one HTTP/2 connection (100)", http2::h2_setting),
    one("H2WindowSize", "mod_http2", SERVER_VHOST, "H2WindowSize BYTES", "each HTTP/2 stream's receive window (65535)", http2::h2_setting),
    one("H2StreamTimeout", "mod_http2", SERVER_VHOST, "H2StreamTimeout TIME", "how long reading a stream's request body or waiting for the client's window may take (default: Timeout); tunnels keep the proxy's idle timeout", http2::h2_setting),
    one("SSLProxyEngine", "mod_ssl", SERVER_VHOST, "SSLProxyEngine On|Off", "allow https:// and wss:// backends", ssl::ssl_proxy),
    one("SSLProxyVerify", "mod_ssl", SERVER_VHOST, "SSLProxyVerify none|require", "verify a backend's chain against SSLProxyCACertificateFile", ssl::ssl_proxy),
    one("SSLProxyCACertificateFile", "mod_ssl", SERVER_VHOST, "SSLProxyCACertificateFile FILE", "the PEM certificates backends' chains are checked against", ssl::ssl_proxy),
    one("SSLProxyCheckPeerName", "mod_ssl", SERVER_VHOST, "SSLProxyCheckPeerName On|Off", "check the backend certificate's name", ssl::ssl_proxy),
    unlisted(one("SSLProxyCheckPeerCN", "mod_ssl", SERVER_VHOST, "SSLProxyCheckPeerCN On|Off", "the older name of SSLProxyCheckPeerName", ssl::ssl_proxy)),
    one("SSLProxyCheckPeerExpire", "mod_ssl", SERVER_VHOST, "SSLProxyCheckPeerExpire On|Off", "check the backend certificate's dates", ssl::ssl_proxy),
    // mod_remoteip
    one("RemoteIPProxyProtocol", "mod_remoteip", SERVER_VHOST, "RemoteIPProxyProtocol On|Off", "clients of this server's addresses (the main server: every address) come through a balancer that sends the PROXY protocol (v1 or v2); the address it names is the client's", remoteip::proxy_protocol),
    one("RemoteIPHeader", "mod_remoteip", SERVER_VHOST, "RemoteIPHeader NAME", "the request field (e.g. X-Forwarded-For) whose list, read from the right over trusted proxies, names the client: the address logs, Require ip and X-Forwarded-For use", remoteip::header),
    one("RemoteIPProxiesHeader", "mod_remoteip", SERVER_VHOST, "RemoteIPProxiesHeader NAME", "the request field the backend gets listing the trusted (not internal) proxies RemoteIPHeader's list went through", remoteip::header),
    line("RemoteIPTrustedProxy", "mod_remoteip", SERVER_VHOST, "RemoteIPTrustedProxy ADDRESS[/BITS]|HOST ...", "proxies trusted to present a client address (public addresses only); without any trusted or internal proxy, every peer is trusted", remoteip::proxies),
    line("RemoteIPInternalProxy", "mod_remoteip", SERVER_VHOST, "RemoteIPInternalProxy ADDRESS[/BITS]|HOST ...", "proxies trusted to present any client address, private ones included", remoteip::proxies),
    one("RemoteIPTrustedProxyList", "mod_remoteip", SERVER_VHOST, "RemoteIPTrustedProxyList FILE", "RemoteIPTrustedProxy's addresses read from a file (words on lines, # comments)", remoteip::proxy_list),
    one("RemoteIPInternalProxyList", "mod_remoteip", SERVER_VHOST, "RemoteIPInternalProxyList FILE", "RemoteIPInternalProxy's addresses read from a file (words on lines, # comments)", remoteip::proxy_list),
    line("RemoteIPProxyProtocolExceptions", "mod_remoteip", SERVER_VHOST, "RemoteIPProxyProtocolExceptions NETWORK ...", "clients from these networks (address or CIDR) send no PROXY header", remoteip::exceptions),
    // wsgate's liveness extensions
    line("WsgateTCPKeepAlive", "wsgate", SERVER_VHOST, "WsgateTCPKeepAlive [client|backend] IDLE INTERVAL COUNT|Off", "(extension, inside <IfModule wsgate_module>) TCP keepalive on the server's client connections and backend connections (both without a side): the first probe after IDLE seconds of silence, then every INTERVAL, closed after COUNT unanswered", liveness::tcp_keepalive),
    line("WsgateTCPUserTimeout", "wsgate", SERVER_VHOST, "WsgateTCPUserTimeout [client|backend] TIME|Off", "(extension, inside <IfModule wsgate_module>) TCP_USER_TIMEOUT: a connection whose sent bytes stay unacknowledged, or whose peer's window stays shut, for TIME is closed", liveness::tcp_user_timeout),
    // mod_rewrite
    line("RewriteEngine", "mod_rewrite", REWRITING, "RewriteEngine On|Off", "runs the rewrite rules (inherited by vhosts; per directory, by the sections inside)", rewrite::rewrite),
    line("RewriteOptions", "mod_rewrite", REWRITING, "RewriteOptions Inherit|InheritBefore", "a vhost (or section) runs the enclosing rules too", rewrite::rewrite),
    line("RewriteCond", "mod_rewrite", REWRITING, "RewriteCond TEST PATTERN [flags]", "a condition of the next RewriteRule", rewrite::rewrite),
    line("RewriteRule", "mod_rewrite", REWRITING, "RewriteRule PATTERN SUBSTITUTION [flags]", "rewrites, proxies ([P]), redirects or refuses; per directory, on the filename", rewrite::rewrite),
    line("RewriteMap", "mod_rewrite", SERVER_VHOST, "RewriteMap NAME txt:FILE|rnd:FILE|int:FUNCTION", "a map for ${NAME:key|default} in rules and conditions (prg:, dbm:, dbd: refused)", rewrite::rewrite),
    line("RewriteBase", "mod_rewrite", PER_DIRECTORY, "RewriteBase URL-PATH", "the url-path of a section's directory, for relative substitutions", rewrite::rewrite),
    // mod_headers, mod_env, mod_setenvif
    line("Header", "mod_headers", RULES, "Header [always|onsuccess] ACTION NAME [VALUE [REPLACEMENT]] [CONDITION]", "changes response headers", headers::header_rule),
    line("RequestHeader", "mod_headers", RULES, "RequestHeader ACTION NAME [VALUE [REPLACEMENT]] [CONDITION]", "changes request headers before they are forwarded", headers::header_rule),
    line("SetEnv", "mod_env", RULES, "SetEnv NAME [VALUE]", "sets a request environment variable", headers::header_rule),
    line("UnsetEnv", "mod_env", RULES, "UnsetEnv NAME ...", "unsets request environment variables", headers::header_rule),
    line("SetEnvIf", "mod_setenvif", RULES, "SetEnvIf ATTRIBUTE REGEX [!]VAR[=VALUE] ...", "sets variables from a request attribute", headers::header_rule),
    line("SetEnvIfNoCase", "mod_setenvif", RULES, "SetEnvIfNoCase ATTRIBUTE REGEX [!]VAR[=VALUE] ...", "SetEnvIf, ignoring case", headers::header_rule),
    line("BrowserMatch", "mod_setenvif", RULES, "BrowserMatch REGEX [!]VAR[=VALUE] ...", "SetEnvIf User-Agent", headers::header_rule),
    line("BrowserMatchNoCase", "mod_setenvif", RULES, "BrowserMatchNoCase REGEX [!]VAR[=VALUE] ...", "SetEnvIfNoCase User-Agent", headers::header_rule),
];

/// Modules wsgate has that add no directive of their own, as `<IfModule>`
/// names them (without `mod_` and `.c`).
const MODULES_WITHOUT_DIRECTIVES: &[&str] = &[
    "http",
    // UNIQUE_ID for every request (see proxy::unique_id).
    "unique_id",
    "so",
    "proxy_http",
    "lbmethod_byrequests",
    "lbmethod_bybusyness",
    "lbmethod_bytraffic",
    "slotmem_shm",
    "mpm_event",
    "logio",
    "authz_host",
    "authz_user",
    "status",
];

/// Apache directives of modules wsgate does not have yet, with the module,
/// so that an operator learns why rather than "unknown directive".
const NOT_YET: &[(&str, &str)] = &[
    ("ProxyMatch", "mod_proxy (<ProxyMatch> sections)"),
    ("ProxyHCTemplate", "mod_proxy_hcheck (templates)"),
    ("SSLCompression", "mod_ssl (compression)"),
    ("SSLVerifyClient", "mod_ssl (client certificates)"),
    ("SSLCACertificateFile", "mod_ssl (client certificates)"),
    ("H2Push", "mod_http2 (server push)"),
];

/// The directive called `name` (any case).
pub fn lookup(name: &str) -> Option<&'static Directive> {
    DIRECTIVES
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(name))
}

/// Whether `<IfModule name>` is true: `name` is a module wsgate has, written
/// `mod_x.c`, `mod_x` or `x_module`.
pub fn module_is_built_in(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let file = name.strip_suffix(".c").unwrap_or(&name);
    let bare = file
        .strip_prefix("mod_")
        .or_else(|| file.strip_suffix("_module"))
        .unwrap_or(file);
    MODULES_WITHOUT_DIRECTIVES.contains(&bare)
        || super::foreign::ignored_module(bare)
        || DIRECTIVES.iter().any(|d| {
            let module = d.module.strip_prefix("mod_").unwrap_or(d.module);
            module == bare && d.module != "mpm"
        })
}

/// Reads one directive in its context.
pub(super) fn dispatch(b: &mut Builder, at: &mut At<'_>, node: &Node) -> Result<(), ConfigError> {
    let o = &node.origin;
    let found = lookup(&node.name);
    if at.scope == Scope::Proxy && !found.is_some_and(|d| d.scopes.contains(&Scope::Proxy)) {
        return Err(ConfigError::new(
            o,
            format!("{} inside <Proxy> is not supported by wsgate", node.name),
        )
        .hint("<Proxy balancer://…> holds BalancerMember and ProxySet lines"));
    }
    if node.children.is_some() && !found.is_some_and(|d| d.section) {
        if found.is_some_and(|d| d.suggested) {
            return Err(ConfigError::new(
                o,
                format!("{} is a directive, not a section", node.name),
            )
            .hint(format!(
                "write it on one line without < >: {} ARGS",
                node.name
            )));
        }
        if found.is_none() && b.foreign.take(node) {
            return Ok(());
        }
        return Err(unknown_or_not_yet(node, true));
    }
    let Some(d) = found else {
        if b.foreign.take(node) {
            return Ok(());
        }
        return Err(unknown_or_not_yet(node, false));
    };
    if !d.scopes.contains(&at.scope) {
        if at.scope == Scope::VirtualHost && b.foreign.take_in_vhost(node) {
            return Ok(());
        }
        return Err(misplaced(node, d, at.scope));
    }
    if d.section && node.children.is_none() {
        return Err(section_needed(node));
    }
    if d.one_arg && node.args.len() != 1 {
        return Err(ConfigError::new(
            o,
            format!(
                "{} takes one argument, {} given",
                node.name,
                node.args.len()
            ),
        ));
    }
    let apply = d.apply.ok_or_else(|| {
        ConfigError::new(o, format!("{} is read with the files, not here", node.name))
    })?;
    apply(b, at, node)?;
    if Written::NOTED.contains(&d.name) {
        match (&mut at.location, at.scope) {
            (Some(loc), _) => loc.written.note(d.name, o),
            (None, Scope::Proxy) => {}
            (None, _) => at.server.written.note(d.name, o),
        }
    }
    Ok(())
}

/// The one argument of a directive the table says takes one.
pub(super) fn arg(node: &Node) -> &str {
    node.args.first().map_or("", String::as_str)
}

fn misplaced(node: &Node, d: &Directive, scope: Scope) -> ConfigError {
    let err = ConfigError::new(
        &node.origin,
        format!("{} not allowed in {}", node.name, scope.describe()),
    );
    if d.scopes == SERVER && scope == Scope::VirtualHost {
        // Apache allows some of these per vhost; wsgate reads them once
        // for the whole process.
        return err.hint(format!(
            "wsgate applies {} to the whole server: move it out of <VirtualHost>",
            node.name
        ));
    }
    let places: Vec<&str> = d
        .scopes
        .iter()
        .filter(|s| **s != Scope::Proxy)
        .map(|s| s.describe())
        .collect();
    err.hint(format!("{} belongs in {}", node.name, places.join(" or ")))
}

pub(super) fn section_needed(node: &Node) -> ConfigError {
    ConfigError::new(
        &node.origin,
        format!(
            "{} is a section: write <{} …> … </{}>",
            node.name, node.name, node.name
        ),
    )
}

fn unknown_or_not_yet(node: &Node, section: bool) -> ConfigError {
    let shown = if section {
        format!("<{}>", node.name)
    } else {
        node.name.clone()
    };
    if let Some((_, module)) = NOT_YET
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(&node.name))
    {
        let err = ConfigError::new(
            &node.origin,
            format!("{shown} needs {module}, which this version of wsgate does not implement yet"),
        );
        // A module wsgate has in part: <IfModule> for it is true and would
        // not keep the line out.
        let module_name = module.split_whitespace().next().unwrap_or(module);
        return if module_is_built_in(module_name) {
            err.hint(
                "remove it; in a file shared with Apache, put such lines in <IfDefine APACHE> … </IfDefine> and start Apache with -D APACHE (<IfModule> is true here: wsgate has part of that module)",
            )
        } else {
            err.hint("remove it, or wrap it in <IfModule> for that module so wsgate skips it")
        };
    }
    let owner = super::apache_modules::module_of(&node.name);
    let message = match owner {
        Some(m) if matches!(m.file, "core" | "http_core") => {
            format!("Invalid command '{shown}': Apache's core has it, wsgate does not implement it")
        }
        Some(m) if module_is_built_in(m.name) => format!(
            "Invalid command '{shown}': wsgate has {} but not this directive of it",
            m.file
        ),
        Some(m) => format!(
            "Invalid command '{shown}': it belongs to {} ({}), which wsgate does not have",
            m.file, m.name
        ),
        None => format!(
            "Invalid command '{shown}', perhaps misspelled or defined by a module wsgate does not have"
        ),
    };
    let mut err = ConfigError::new(&node.origin, message);
    let lower = node.name.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "directory" | "directorymatch" | "files" | "filesmatch" | "documentroot"
    ) {
        err = err.hint("wsgate serves no files; use <Location> for URL paths");
    } else if lower.starts_with("proxywebsocket") {
        err = err.hint("that directive exists only in Apache's development trunk; a tunnel's idle time follows timeout= or ProxyTimeout and Timeout");
    } else if let Some(m) =
        owner.filter(|m| !matches!(m.file, "core" | "http_core") && !module_is_built_in(m.name))
    {
        err = err.hint(format!(
            "remove it, or keep it inside <IfModule {}> … </IfModule> so that a file shared with Apache keeps it for Apache only",
            m.name
        ));
    } else if let Some(n) = error::nearest(
        &node.name,
        DIRECTIVES.iter().filter(|d| d.suggested).map(|d| d.name),
    ) {
        err = err.hint(format!("did you mean '{n}'?"));
    }
    err
}

/// `wsgate -L`: every directive, in the shape of `httpd -L`: name and
/// module, then its syntax, what wsgate does with it, and where it may be
/// written.
pub fn listing() -> String {
    let mut out = String::new();
    for d in DIRECTIVES {
        let place = if d.apply.is_none() {
            "anywhere".to_string()
        } else {
            let scopes: Vec<_> = d.scopes.iter().map(|s| s.describe()).collect();
            format!("in {}", scopes.join(", "))
        };
        let name = if d.section {
            format!("<{}", d.name)
        } else {
            d.name.to_string()
        };
        out.push_str(&format!(
            "{name} ({}.c)\n\t{}\n\t{}\n\tAllowed {place}\n",
            d.module, d.syntax, d.help
        ));
    }
    for (name, module) in NOT_YET {
        out.push_str(&format!(
            "{name}\n\tnot yet, {module}: an error naming the module; skipped inside <IfModule> for it\n"
        ));
    }
    out
}

/// The README's directive table, from [`DIRECTIVES`].
#[cfg(test)]
pub fn markdown_table() -> String {
    let mut out =
        String::from("| Directive | Module | Where | What wsgate does |\n|---|---|---|---|\n");
    for d in DIRECTIVES {
        let place = if d.apply.is_none() {
            "anywhere".to_string()
        } else {
            d.scopes
                .iter()
                .map(|s| s.short())
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            d.syntax.replace('|', "\\|"),
            d.module,
            place,
            d.help.replace('|', "\\|")
        ));
    }
    for (name, module) in NOT_YET {
        out.push_str(&format!(
            "| `{name}` | {module} | — | not yet: an error naming the module; skipped inside `<IfModule>` for it |\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_module_of_the_table_is_built_in() {
        for (i, d) in DIRECTIVES.iter().enumerate() {
            assert!(
                DIRECTIVES[..i]
                    .iter()
                    .all(|e| !e.name.eq_ignore_ascii_case(d.name)),
                "{} twice",
                d.name
            );
            if d.module != "mpm" {
                assert!(module_is_built_in(d.module), "{}", d.module);
                assert!(module_is_built_in(&format!("{}.c", d.module)));
            }
        }
        assert!(module_is_built_in("proxy_wstunnel_module"));
        assert!(module_is_built_in("core.c"), "Apache's own spelling");
        assert!(
            module_is_built_in("mod_status.c"),
            "SetHandler server-status"
        );
        assert!(module_is_built_in("mod_authz_host.c"), "Require ip");
        assert!(!module_is_built_in("mod_cgi.c"));
        assert!(!module_is_built_in("mpm"));
    }

    /// The README's table is this table: regenerate it from the failure
    /// message when a directive changes.
    #[test]
    fn the_readme_lists_the_directive_table() {
        let readme = include_str!("../../README.md");
        let table = markdown_table();
        assert!(
            readme.contains(&table),
            "README.md's directive table is out of date; it should read:\n{table}"
        );
    }
}
