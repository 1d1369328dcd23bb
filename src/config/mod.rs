//! From Apache configuration text to a validated [`Config`].
//!
//! `lexer` knows the file syntax, `include` the read-time directives
//! (`Include`, `Define`, `<IfModule>`…); this file walks the result in its
//! contexts (server, `<VirtualHost>`, `<Location>`) and hands each directive
//! to the module that owns it (`proxy` for mod_proxy, `ssl` for mod_ssl).

mod accesslog;
pub(crate) mod apache_modules;
mod auth;
pub mod balancer;
mod banner;
pub(crate) mod ciphers;
mod core;
pub(crate) mod directives;
pub(crate) mod error;
mod errordoc;
pub(crate) mod expr;
mod foreign;
pub mod headers;
mod reqtimeout;
pub mod source;
mod static_files;
mod unixd;
pub use accesslog::{parse_format, split_command};
pub(crate) mod http2;
pub(crate) mod include;
pub(crate) mod lexer;
pub(crate) mod liveness;
pub mod model;
mod ocsp;
pub(crate) mod proxy;
mod proxy_extras;
pub(crate) mod remoteip;
mod require;
pub mod rewrite;
pub(crate) mod ssl;
pub(crate) mod values;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use balancer::ServerKey;
pub use directives::listing as directive_listing;
use directives::Scope;
pub use error::{ConfigError, Origin};
use lexer::Node;
pub use model::*;

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path, defines: &[String]) -> Result<Config, ConfigError> {
    let root = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut expander = include::Expander::new(defines, root.clone());
    let nodes = expander.read_file(path);
    let prior = std::mem::take(&mut expander.errors);
    let mut foreign = foreign::Foreign::new(
        std::mem::take(&mut expander.loaded_missing),
        &expander.skipped_blocks,
    );
    foreign.unique_id = expander.unique_id;
    // Relative paths (logs, keys, the document root) resolve against
    // ServerRoot, as Apache's do, not the main file's folder.
    let root = expander.server_root().to_path_buf();
    build(expanded(nodes, &prior)?, &root, path, (prior, foreign))
}

/// The expanded tree, or — when expanding stopped at the error limit —
/// the errors gathered so far.
fn expanded(
    nodes: Result<Vec<Node>, ConfigError>,
    prior: &[ConfigError],
) -> Result<Vec<Node>, ConfigError> {
    nodes.map_err(|e| ConfigError::gathered(prior.to_vec()).unwrap_or(e))
}

/// Validates configuration text as if read from a file named `name`.
pub fn from_str(text: &str, name: &str) -> Result<Config, ConfigError> {
    let root = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let mut expander = include::Expander::new(&[], root.clone());
    let nodes = expander.expand_text(text, Path::new(name), 0);
    let prior = std::mem::take(&mut expander.errors);
    let mut foreign = foreign::Foreign::new(
        std::mem::take(&mut expander.loaded_missing),
        &expander.skipped_blocks,
    );
    foreign.unique_id = expander.unique_id;
    build(
        expanded(nodes, &prior)?,
        &root,
        Path::new(name),
        (prior, foreign),
    )
}

/// Every worker of a configuration, each with its identity.
#[derive(Debug, Default)]
pub struct Workers {
    list: Vec<Worker>,
    /// How many workers have a name so far, per balancer (for
    /// [`WorkerId::nth`]).
    seen: HashMap<(Option<String>, String), usize>,
}

impl Workers {
    /// A new worker, the member of `balancer` if given, defined at `origin`.
    pub fn add(
        &mut self,
        balancer: Option<&str>,
        name: String,
        params: WorkerParams,
        origin: &Origin,
    ) -> WorkerIdx {
        let seen = self
            .seen
            .entry((balancer.map(str::to_string), name.clone()))
            .or_default();
        let id = WorkerId {
            balancer: balancer.map(str::to_string),
            name: name.clone(),
            nth: *seen,
        };
        *seen += 1;
        self.list.push(Worker {
            id,
            name,
            params,
            origin: origin.clone(),
        });
        WorkerIdx(self.list.len() - 1)
    }

    pub fn get(&self, idx: WorkerIdx) -> &Worker {
        &self.list[idx.0]
    }
}

/// Where a directive is being read: its scope, the server it belongs to,
/// and the enclosing `<Location>` or `<Proxy>` section.
pub(crate) struct At<'a> {
    pub scope: Scope,
    pub server: &'a mut ServerDraft,
    pub location: Option<&'a mut Location>,
    /// Inside `<Proxy balancer://…>`: its url.
    pub proxy: Option<&'a str>,
    /// Inside `<Directory>` or `<Files>` (and their regex forms).
    pub section: Option<&'a mut model::files::Section>,
}

/// A server's directives before they are merged with the main server's.
pub(crate) struct ServerDraft {
    key: ServerKey,
    server_name: Option<String>,
    aliases: Vec<String>,
    addrs: Vec<VhostAddr>,
    routes: Vec<Route>,
    locations: Vec<Location>,
    preserve_host: Option<bool>,
    add_headers: Option<bool>,
    fallback_to_http: Option<bool>,
    frames: Option<bool>,
    ping: Option<Option<model::WsPing>>,
    trace_enable: Option<bool>,
    proxy_timeout: Option<Duration>,
    timeout: Option<Duration>,
    ssl: ssl::SslDraft,
    tls: ssl::TlsDraft,
    http2: http2::Http2Draft,
    liveness: liveness::LivenessDraft,
    rewrite: rewrite::RewriteDraft,
    rules: model::headers::Rules,
    reverse: Vec<ReverseRule>,
    log: accesslog::LogDraft,
    files: static_files::FilesDraft,
    origin: Option<Origin>,
    written: Written,
    signature: Option<model::identity::ServerSignature>,
    admin: Option<String>,
    read_timeouts: reqtimeout::ReadTimeoutsDraft,
    remote_ip: remoteip::HeaderDraft,
    via: Option<model::proxy_answers::Via>,
    error_override: model::proxy_answers::ErrorOverride,
    source_address: Option<std::net::IpAddr>,
}

impl ServerDraft {
    fn new(key: ServerKey) -> ServerDraft {
        ServerDraft {
            key,
            server_name: None,
            aliases: Vec::new(),
            addrs: Vec::new(),
            routes: Vec::new(),
            locations: Vec::new(),
            preserve_host: None,
            add_headers: None,
            fallback_to_http: None,
            frames: None,
            ping: None,
            trace_enable: None,
            proxy_timeout: None,
            timeout: None,
            ssl: ssl::SslDraft::default(),
            tls: ssl::TlsDraft::default(),
            http2: http2::Http2Draft::default(),
            liveness: liveness::LivenessDraft::default(),
            rewrite: rewrite::RewriteDraft::default(),
            rules: model::headers::Rules::default(),
            reverse: Vec::new(),
            log: accesslog::LogDraft::default(),
            files: static_files::FilesDraft::default(),
            origin: None,
            written: Written::default(),
            signature: None,
            admin: None,
            read_timeouts: reqtimeout::ReadTimeoutsDraft::default(),
            remote_ip: remoteip::HeaderDraft::default(),
            via: None,
            error_override: Default::default(),
            source_address: None,
        }
    }
}

/// The configuration as the directives build it, before it is merged and
/// checked as a whole.
pub(crate) struct Builder {
    listeners: Vec<(Listener, Origin)>,
    /// `AllowOverride` other than `None` in a `<Directory>` without any
    /// `.htaccess` now: (its pattern, the line and its text, its
    /// warning), an error once the configuration is read if wsgate serves
    /// files there.
    unread_overrides: Vec<(Vec<u8>, (Origin, String), String)>,
    /// `RewriteMap`s, by the server they were read in.
    rewrite_maps: Vec<(ServerKey, String, Arc<model::rewrite::RewriteMap>)>,
    main: ServerDraft,
    vhosts: Vec<ServerDraft>,
    limits: Limits,
    timeout: Option<Duration>,
    keepalive: bool,
    max_keepalive_requests: u32,
    deflate_level: u32,
    keepalive_timeout: Duration,
    graceful_shutdown: Option<Option<Duration>>,
    max_connections: Option<usize>,
    sni_policy: SniPolicy,
    error_log: Option<PathBuf>,
    log_level: tracing::Level,
    pid_file: Option<PathBuf>,
    /// `User` and `Group`.
    user: Option<unixd::Named>,
    group: Option<unixd::Named>,
    warnings: Vec<String>,
    root: PathBuf,
    /// Worker urls defined so far, for the S30 warning.
    worker_names: Vec<(String, Origin)>,
    balancers: balancer::Balancers,
    workers: Workers,
    /// `GlobalLog` lines.
    global_logs: Vec<accesslog::LogLine>,
    extended_status: bool,
    proxy_protocol: ProxyProtocol,
    /// Errors of lines read so far (see [`Builder::go_on`]).
    errors: Vec<ConfigError>,
    /// Lines of other modules: ignored, or of a module not loaded here.
    foreign: foreign::Foreign,
    /// `TypesConfig`'s table.
    types: Option<std::collections::HashMap<String, String>>,
    server_tokens: model::identity::ServerTokens,
    proxy_status: model::identity::ProxyStatus,
}

/// Builds the model from expanded directives; `main_file` is named in
/// errors about what the whole configuration lacks.
/// `prior`: the errors of lines the expansion could not read, reported
/// first, and the `LoadModule` lines of modules wsgate does not have.
pub fn build(
    nodes: Vec<Node>,
    root: &Path,
    main_file: &Path,
    (prior, foreign): (Vec<ConfigError>, foreign::Foreign),
) -> Result<Config, ConfigError> {
    let mut b = Builder {
        listeners: Vec::new(),
        rewrite_maps: Vec::new(),
        main: ServerDraft::new(ServerKey::Main),
        vhosts: Vec::new(),
        limits: Limits::default(),
        timeout: None,
        keepalive: true,
        max_keepalive_requests: 100,
        deflate_level: 6,
        keepalive_timeout: Duration::from_secs(5),
        graceful_shutdown: None,
        max_connections: None,
        sni_policy: SniPolicy::default(),
        error_log: None,
        log_level: tracing::Level::WARN,
        pid_file: None,
        user: None,
        group: None,
        warnings: Vec::new(),
        unread_overrides: Vec::new(),
        root: root.to_path_buf(),
        worker_names: Vec::new(),
        balancers: balancer::Balancers::default(),
        workers: Workers::default(),
        global_logs: Vec::new(),
        extended_status: true,
        proxy_protocol: ProxyProtocol::default(),
        errors: prior,
        foreign,
        types: None,
        server_tokens: Default::default(),
        proxy_status: Default::default(),
    };
    let mut main = std::mem::replace(&mut b.main, ServerDraft::new(ServerKey::Main));
    let full = b.errors.len() >= error::MAX_ERRORS;
    for node in nodes.iter().filter(|_| !full) {
        let mut at = At {
            scope: Scope::Server,
            server: &mut main,
            location: None,
            proxy: None,
            section: None,
        };
        let read = directives::dispatch(&mut b, &mut at, node);
        if b.go_on(read).is_err() {
            break;
        }
    }
    // A missing module's one error comes before the lines' own.
    let mut errors = b.foreign.errors();
    errors.append(&mut b.errors);
    b.warnings.extend(b.foreign.warning());
    // Checks of the whole need every line read: not after errors, which
    // they would only echo (no Listen when a Listen line was wrong).
    if let Some(e) = ConfigError::gathered(errors) {
        return Err(e);
    }
    b.main = main;
    b.finish(main_file)
}

impl Builder {
    /// Keeps a line's error to report with the others and reads on, as a
    /// compiler does; an `Err` once [`error::MAX_ERRORS`] are kept, which
    /// the sections around pass up without keeping it again.
    pub(crate) fn go_on(&mut self, read: Result<(), ConfigError>) -> Result<(), ConfigError> {
        let Err(e) = read else { return Ok(()) };
        if self.errors.len() >= error::MAX_ERRORS {
            return Err(e);
        }
        self.errors.push(e);
        if self.errors.len() >= error::MAX_ERRORS {
            return Err(ConfigError::new(&self.errors[0].origin, "too many errors"));
        }
        Ok(())
    }

    /// The target of a ProxyPass line: its worker (added to the
    /// configuration's), or the balancer it names (created if this is its
    /// first mention) with the balancer parameters the line sets.
    fn target(
        &mut self,
        line: proxy::PassLine,
        node: &Node,
        server: ServerKey,
    ) -> Result<Target, ConfigError> {
        let Some(pass) = line.to else {
            return Ok(Target::Exclude);
        };
        let to = match pass.dest {
            proxy::Dest::Worker {
                name,
                params,
                parsed,
            } => {
                self.note_worker(&name, node);
                PassTo::Worker {
                    worker: self.workers.add(None, name, params, &node.origin),
                    parsed,
                }
            }
            proxy::Dest::Balancer { params } => {
                self.note_worker(&pass.url.to_ascii_lowercase(), node);
                let found = self.balancers.get(&pass.url, &node.origin)?;
                found.draft.used_by.push(server);
                for (k, v) in &params {
                    found.draft.set(k, v, &node.origin)?;
                }
                PassTo::Balancer(found.idx)
            }
        };
        Ok(Target::Proxy(ProxyTarget {
            url: pass.url,
            substitutes: pass.substitutes,
            nocanon: pass.nocanon,
            noquery: pass.noquery,
            to,
        }))
    }

    /// S30: Apache makes a ProxyPass whose url starts with an earlier
    /// worker's share that worker and silently drops its parameters; wsgate
    /// keeps them, and says where the two would differ.
    fn note_worker(&mut self, name: &str, node: &Node) {
        let has_params = node
            .args
            .iter()
            .any(|a| a.contains('=') && !a.contains("://"));
        if has_params {
            if let Some((earlier, origin)) = self
                .worker_names
                .iter()
                .find(|(earlier, _)| name.starts_with(earlier.as_str()) && earlier.contains("://"))
            {
                self.warnings.push(format!(
                    "{}: the url starts with {earlier}, already a worker at {origin}: Apache would share that worker and ignore this line's parameters; wsgate applies them",
                    node.origin
                ));
            }
        }
        self.worker_names
            .push((name.to_string(), node.origin.clone()));
    }

    fn finish(mut self, main_file: &Path) -> Result<Config, ConfigError> {
        if self.listeners.is_empty() {
            return Err(ConfigError {
                origin: Origin {
                    file: Arc::new(main_file.to_path_buf()),
                    line: 1,
                },
                message:
                    "no Listen directive anywhere in the configuration: wsgate would not listen"
                        .into(),
                hint: Some("add e.g. 'Listen 127.0.0.1:8080'".into()),
                more: Vec::new(),
            });
        }
        let timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT);
        // Every server's SSLProxy* settings first: balancers' health checks
        // take those of a server that proxies to them.
        let run_as = unixd::run_as(self.user.take(), self.group.take())?;
        let (ssl_proxies, vhost_ssl) = self.ssl_proxies()?;
        let balancers = self.balancers(&ssl_proxies, &vhost_ssl)?;
        for draft in std::iter::once(&self.main).chain(self.vhosts.iter()) {
            if let Some(o) = draft.rewrite.dangling() {
                self.warnings.push(format!(
                    "{o}: RewriteCond without a RewriteRule after it is ignored (as in Apache)"
                ));
            }
        }
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_ascii_lowercase())
            .unwrap_or_else(|_| "localhost".into());
        // TLS toward clients: certificates and keys read and checked now.
        // The main server serves addresses without virtual hosts: it counts
        // as on an https listener only when every listener is one.
        let all_https = self.listeners.iter().all(|(l, _)| l.https);
        let main_tls =
            self.main
                .tls
                .resolve(None, "the main server", all_https, &mut self.warnings)?;
        let mut vhost_tls = Vec::with_capacity(self.vhosts.len());
        for d in &self.vhosts {
            let https = self.listeners.iter().any(|(l, _)| {
                l.https
                    && d.addrs
                        .iter()
                        .any(|a| a.port.is_none_or(|p| p == l.addr.port()))
            });
            let label = describe_vhost(d);
            vhost_tls.push(d.tls.resolve(
                Some(&self.main.tls),
                &label,
                https,
                &mut self.warnings,
            )?);
        }
        let logs = {
            let vhost_logs: Vec<&accesslog::LogDraft> =
                self.vhosts.iter().map(|d| &d.log).collect();
            accesslog::resolve(
                &self.main.log,
                &vhost_logs,
                &self.global_logs,
                &mut self.warnings,
            )?
        };
        let types = static_files::types_table(self.types.take());
        // Apache's compiled-in DocumentRoot, for a configuration that
        // serves files somewhere (in Debian's tree a vhost of ProxyPass
        // lines serves /var/www/html for the rest, as with Apache); one
        // that names no file serves none.
        let vhost_files = self.vhosts.iter().map(|v| &v.files);
        if std::iter::once(&self.main.files)
            .chain(vhost_files)
            .any(|f| f.names_files())
        {
            self.main.files.default_root();
        }
        static_files::check_unread_overrides(&mut self)?;
        let main = MainParts::take(&mut self.main, hostname, timeout, &types);
        let mut vhosts: Vec<Server> = std::mem::take(&mut self.vhosts)
            .into_iter()
            .zip(vhost_ssl)
            .zip(vhost_tls)
            .map(|((draft, ssl), tls)| main.vhost(draft, ssl, tls))
            .collect();
        let mut main = main.server(main_tls);
        main.access_logs = logs.main;
        for (v, own) in vhosts.iter_mut().zip(logs.vhosts) {
            v.access_logs = own;
        }
        check_tls_addresses(&vhosts)?;
        let servers: Vec<&Server> = std::iter::once(&main).chain(&vhosts).collect();
        proxy::route_warnings(&servers, &self.workers.list, &balancers, &mut self.warnings);
        let shows = |h: authz::Handler| {
            servers
                .iter()
                .any(|s| s.locations.iter().any(|l| l.handler == Some(h)))
        };
        let status_page = shows(authz::Handler::ServerStatus);
        let shows_counts = status_page || shows(authz::Handler::Metrics);
        let text_maps = self
            .rewrite_maps
            .iter()
            .filter(|(_, _, m)| matches!(**m, model::rewrite::RewriteMap::Text { .. }))
            .map(|(_, _, m)| m.clone())
            .collect();
        Ok(Config {
            text_maps,
            listeners: self.listeners.into_iter().map(|(l, _)| l).collect(),
            sni_policy: self.sni_policy,
            main,
            vhosts,
            limits: self.limits,
            timeout,
            keepalive: self.keepalive,
            max_keepalive_requests: self.max_keepalive_requests,
            deflate_level: self.deflate_level,
            keepalive_timeout: self.keepalive_timeout,
            graceful_shutdown: self
                .graceful_shutdown
                .unwrap_or(Some(DEFAULT_GRACEFUL_SHUTDOWN)),
            max_connections: self.max_connections,
            error_log: self.error_log,
            log_level: self.log_level,
            pid_file: self.pid_file,
            run_as,
            warnings: self.warnings,
            workers: self.workers.list,
            balancers,
            ssl_proxies,
            access_logs: logs.logs,
            extended_status: self.extended_status,
            status_page,
            shows_counts,
            proxy_protocol: self.proxy_protocol,
            banner: self.server_tokens.banner(env!("CARGO_PKG_VERSION")),
            proxy_status: self.proxy_status,
            unique_id: self.foreign.unique_id,
        })
    }

    /// The distinct `SSLProxy*` settings (the main server's first) and
    /// which of them each vhost uses: its own when it sets any.
    fn ssl_proxies(&self) -> Result<(Vec<SslProxy>, Vec<SslIdx>), ConfigError> {
        let mut ssl_proxies = vec![self.main.ssl.resolve(None)?];
        let mut vhost_ssl = Vec::with_capacity(self.vhosts.len());
        for draft in &self.vhosts {
            vhost_ssl.push(if draft.ssl.is_empty() {
                SslIdx(0)
            } else {
                ssl_proxies.push(draft.ssl.resolve(Some(&self.main.ssl))?);
                SslIdx(ssl_proxies.len() - 1)
            });
        }
        Ok((ssl_proxies, vhost_ssl))
    }

    /// Builds the balancers, once every server that proxies to one is known.
    fn balancers(
        &mut self,
        ssl_proxies: &[SslProxy],
        vhost_ssl: &[SslIdx],
    ) -> Result<Vec<model::balancer::Balancer>, ConfigError> {
        for draft in std::iter::once(&self.main).chain(self.vhosts.iter()) {
            for name in rewrite_balancers(&draft.rewrite.rules) {
                if let Some(d) = self.balancers.drafts.iter_mut().find(|d| d.name == name) {
                    d.used_by.push(draft.key);
                }
            }
        }
        let ssl_of = |key: ServerKey| {
            let idx = match key {
                ServerKey::Main => SslIdx(0),
                ServerKey::Vhost(i) => vhost_ssl[i],
            };
            (idx, ssl_proxies[idx.0].engine)
        };
        let balancers = self.balancers.finish(&mut self.workers, ssl_of)?;
        for draft in std::iter::once(&self.main).chain(self.vhosts.iter()) {
            check_rewrite_balancers(&draft.rewrite.rules, &balancers)?;
        }
        Ok(balancers)
    }
}

/// The main server's settings, which every vhost starts from (Apache's
/// merge of a vhost over the main server).
struct MainParts {
    name: String,
    timeout: Duration,
    settings: ProxySettings,
    routes: Vec<Route>,
    locations: Vec<Location>,
    reverse: Vec<ReverseRule>,
    engine: bool,
    headers: model::headers::Rules,
    rewrite: Vec<model::rewrite::Rule>,
    http2: http2::Http2Draft,
    liveness: liveness::LivenessDraft,
    written: Written,
    files: model::files::Files,
    files_draft: static_files::FilesDraft,
    types: std::sync::Arc<model::files::Mime>,
    signature: model::identity::Signature,
    read_timeouts: model::identity::ReadTimeouts,
    remote_ip: remoteip::HeaderDraft,
}

impl MainParts {
    fn take(
        main: &mut ServerDraft,
        hostname: String,
        timeout: Duration,
        types: &std::sync::Arc<model::files::Mime>,
    ) -> MainParts {
        MainParts {
            files: main.files.main(types),
            files_draft: std::mem::take(&mut main.files),
            types: types.clone(),
            name: main.server_name.clone().unwrap_or(hostname),
            timeout,
            settings: ProxySettings {
                preserve_host: main.preserve_host.unwrap_or(false),
                add_headers: main.add_headers.unwrap_or(true),
                fallback_to_http: main.fallback_to_http.unwrap_or(true),
                frames: main.frames.unwrap_or(false),
                ping: main.ping.flatten(),
                trace_enable: main.trace_enable.unwrap_or(true),
                proxy_timeout: main.proxy_timeout,
                ssl_proxy: SslIdx(0),
                via: main.via.unwrap_or_default(),
                error_override: main.error_override.clone(),
                source_address: main.source_address,
            },
            routes: std::mem::take(&mut main.routes),
            locations: std::mem::take(&mut main.locations),
            reverse: std::mem::take(&mut main.reverse),
            engine: main.rewrite.engine.unwrap_or(false),
            headers: std::mem::take(&mut main.rules),
            rewrite: std::mem::take(&mut main.rewrite.rules),
            http2: main.http2.clone(),
            liveness: main.liveness.clone(),
            written: std::mem::take(&mut main.written),
            signature: model::identity::Signature {
                mode: main.signature.unwrap_or_default(),
                admin: main.admin.clone(),
            },
            read_timeouts: main.read_timeouts.resolve(&Default::default()),
            remote_ip: main.remote_ip.clone(),
        }
    }

    /// A vhost, merged over the main server.
    fn vhost(
        &self,
        mut draft: ServerDraft,
        ssl_proxy: SslIdx,
        tls: Option<std::sync::Arc<model::ServerTls>>,
    ) -> Server {
        let main = &self.settings;
        let settings = ProxySettings {
            preserve_host: draft.preserve_host.unwrap_or(main.preserve_host),
            add_headers: draft.add_headers.unwrap_or(main.add_headers),
            fallback_to_http: draft.fallback_to_http.unwrap_or(main.fallback_to_http),
            frames: draft.frames.unwrap_or(main.frames),
            ping: draft.ping.unwrap_or(main.ping),
            trace_enable: draft.trace_enable.unwrap_or(main.trace_enable),
            proxy_timeout: draft.proxy_timeout.or(main.proxy_timeout),
            ssl_proxy,
            via: draft.via.unwrap_or(main.via),
            error_override: draft.error_override.over(&main.error_override),
            source_address: draft.source_address.or(main.source_address),
        };
        let server_name = draft
            .server_name
            .clone()
            .unwrap_or_else(|| self.name.clone());
        let mut names = vec![server_name.clone()];
        names.extend(draft.aliases.iter().cloned());
        let mut routes = self.routes.clone();
        routes.extend(draft.routes);
        let mut locations = self.locations.clone();
        locations.extend(draft.locations);
        let mut reverse = self.reverse.clone();
        reverse.extend(draft.reverse);
        // S83: the engine setting is inherited, the rules only with
        // RewriteOptions Inherit (after the vhost's) or InheritBefore.
        let own = std::mem::take(&mut draft.rewrite.rules);
        let main_rules = self.rewrite.iter().cloned();
        let rewrite = match (
            draft.rewrite.engine.unwrap_or(self.engine),
            draft.rewrite.inherit,
        ) {
            (false, _) => Vec::new(),
            (true, rewrite::Inherit::No) => own,
            (true, rewrite::Inherit::After) => own.into_iter().chain(main_rules).collect(),
            (true, rewrite::Inherit::Before) => main_rules.chain(own).collect(),
        };
        Server {
            workers: collect_workers(&routes, &locations),
            rules: self.headers.merged(&draft.rules),
            server_name,
            timeout: draft.timeout.unwrap_or(self.timeout),
            rewrite,
            names,
            addrs: draft.addrs,
            routes,
            locations,
            settings,
            reverse,
            tls,
            http2: draft.http2.resolve(&self.http2),
            access_logs: Vec::new(),
            liveness: draft.liveness.resolve(&self.liveness),
            files: draft
                .files
                .vhost(&self.files, &self.files_draft, &self.types),
            origin: draft.origin,
            written: draft.written,
            signature: model::identity::Signature {
                mode: draft.signature.unwrap_or(self.signature.mode),
                admin: draft.admin.or_else(|| self.signature.admin.clone()),
            },
            read_timeouts: draft.read_timeouts.resolve(&self.read_timeouts),
            remote_ip: draft.remote_ip.resolve(&self.remote_ip),
        }
    }

    /// The main server itself.
    fn server(self, tls: Option<std::sync::Arc<model::ServerTls>>) -> Server {
        Server {
            workers: collect_workers(&self.routes, &self.locations),
            rules: self.headers,
            names: vec![self.name.clone()],
            server_name: self.name,
            timeout: self.timeout,
            rewrite: if self.engine {
                self.rewrite
            } else {
                Vec::new()
            },
            addrs: Vec::new(),
            routes: self.routes,
            locations: self.locations,
            settings: self.settings,
            reverse: self.reverse,
            tls,
            http2: self.http2.resolve(&http2::Http2Draft::default()),
            access_logs: Vec::new(),
            liveness: self.liveness.resolve(&liveness::LivenessDraft::default()),
            files: self.files,
            origin: None,
            written: self.written,
            signature: self.signature,
            read_timeouts: self.read_timeouts,
            remote_ip: self.remote_ip.resolve(&remoteip::HeaderDraft::default()),
        }
    }
}

/// How errors name a `<VirtualHost>`: by its ServerName, or where it starts.
fn describe_vhost(draft: &ServerDraft) -> String {
    match (&draft.server_name, &draft.origin) {
        (Some(name), _) => name.clone(),
        (None, Some(o)) => format!("the <VirtualHost> at {o}"),
        (None, None) => "a <VirtualHost>".into(),
    }
}

/// Name-based virtual hosts on one address share its protocol: a client
/// speaks TLS or plain HTTP before it names a host, so a vhost with
/// `SSLEngine on` beside one without on the same address could never be
/// reached as written.
fn check_tls_addresses(vhosts: &[Server]) -> Result<(), ConfigError> {
    for (i, v) in vhosts.iter().enumerate() {
        // Every vhost comes from a <VirtualHost> line.
        let Some(origin) = &v.origin else {
            continue;
        };
        for w in &vhosts[..i] {
            if v.tls.is_some() == w.tls.is_some() {
                continue;
            }
            if let Some(addr) = v.addrs.iter().find(|a| w.addrs.contains(a)) {
                let (on, off) = if v.tls.is_some() { (v, w) } else { (w, v) };
                let place = |s: &Server| {
                    s.origin
                        .as_ref()
                        .map_or_else(|| s.server_name.clone(), |o| o.to_string())
                };
                let port = addr.port.map_or("*".to_string(), |p| p.to_string());
                return Err(ConfigError::new(
                    origin,
                    format!(
                        "virtual hosts on one address (port {port}) mix TLS and plain HTTP: SSLEngine is on for {} ({}) and off for {} ({})",
                        on.server_name,
                        place(on),
                        off.server_name,
                        place(off)
                    ),
                )
                .hint("give the TLS virtual hosts their own port (e.g. <VirtualHost *:443>), or turn SSLEngine on in all of them"));
            }
        }
    }
    Ok(())
}

/// The balancers `[P]` rules name literally (`balancer://name/…`).
fn rewrite_balancers(rules: &[model::rewrite::Rule]) -> impl Iterator<Item = String> + '_ {
    rules.iter().filter(|r| r.flags.proxy).filter_map(|rule| {
        let Some(model::rewrite::Piece::Literal(first)) =
            rule.substitution.as_ref().and_then(|t| t.pieces.first())
        else {
            return None;
        };
        let text = String::from_utf8_lossy(first);
        balancer::split_balancer_url(&text).map(|(name, _)| name)
    })
}

/// A `[P]` rule naming `balancer://name` needs that balancer defined; this
/// is known once the whole file is read (it may come after the rule).
fn check_rewrite_balancers(
    rules: &[model::rewrite::Rule],
    balancers: &[model::balancer::Balancer],
) -> Result<(), ConfigError> {
    for rule in rules.iter().filter(|r| r.flags.proxy) {
        let Some(name) = rewrite_balancers(std::slice::from_ref(rule)).next() else {
            continue;
        };
        if !balancers.iter().any(|b| b.name == name) {
            return Err(ConfigError::new(
                &rule.origin,
                format!("RewriteRule [P] to {name}, which no <Proxy {name}> defines"),
            )
            .hint(format!(
                "define it with <Proxy \"{name}\"> and BalancerMember lines"
            )));
        }
    }
    Ok(())
}

/// Every worker a server's ProxyPass lines define, for `[P]` rules to use
/// the parameters of the one whose url prefixes their target (S93).
fn collect_workers(routes: &[Route], locations: &[Location]) -> Vec<WorkerIdx> {
    let targets = routes.iter().map(|r| &r.target).chain(
        locations
            .iter()
            .filter_map(|l| l.proxy_pass.as_ref().map(|p| &p.target)),
    );
    targets
        .filter_map(|t| match t {
            Target::Proxy(ProxyTarget {
                to: PassTo::Worker { worker, .. },
                ..
            }) => Some(*worker),
            _ => None,
        })
        .collect()
}
