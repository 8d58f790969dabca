//! Manifests: a TOML description of a system of actors, and running one.
//!
//! ```toml
//! [runtime]                 # optional; every key optional
//! shards = 2
//! mailbox-capacity = 1024
//! [[actor]]
//! name = "counter"
//! component = "counter.wat" # .wasm or .wat, relative to the manifest
//! config = "text for init"  # optional
//! shard = 1                 # optional
//! accepts = ["cbor", "json"] # optional: the codecs it takes (default: what the component declares)
//! restart = "on-failure"    # optional (default "never"): restarted in place when it fails,
//! max-restarts = 5          #   at most 5 times within
//! restart-window = "10s"    #   10 seconds, the second restart in a window after
//! backoff = "10ms"          #   10 ms, doubling up to
//! max-backoff = "1s"        #   1 second
//! [[component]]             # optional: registered for actors to spawn by name
//! name = "worker"
//! path = "worker.wasm"
//! [[group]]                 # optional: actors restarted together
//! name = "pipeline"
//! strategy = "one-for-all"  # or "one-for-one" (default), "rest-for-one"
//! members = ["parse", "store"] # [[actor]]s without restart keys of their own;
//!                           # "started after" follows the [[actor]] order
//! max-restarts = 5          # for the whole group; also restart-window, backoff,
//!                           # max-backoff, shard (its members live there)
//! [[upgrade]]               # optional: swapped in once the sends are made
//! actor = "counter"
//! component = "counter-v2.wat"
//! [[send]]                  # delivered by the host, in order, after every actor is spawned
//! to = "counter"
//! payload = "hello"         # UTF-8 text; or payload-hex = "00ff"; or json = '{"Add": 5}' (typed)
//! repeat = 1                # optional
//! [[publish]]               # published by the host after the sends, in order
//! topic = "prices.eur"      # to every current subscriber (none: nothing happens)
//! payload = "1.08"          # as for [[send]]: payload, payload-hex or json
//! repeat = 1                # optional
//! ```
//!
//! `[runtime]` keys: `shards`, `mailbox-capacity`, `max-payload` (bytes),
//! `epoch-tick-ms`, `cpu-budget-ms` (0 turns budgets off), `memory-limit` (bytes),
//! `keep-resident` (bytes), `max-actors`, `pin-cores`, `batch`, `ring-capacity`, `drain-timeout-ms`,
//! `max-open-requests`, `max-timers`, `trace-sampling` (0 to 1),
//! `log-messages` (actor name patterns), `park-spin-us`, `park-spin-max-us`, `storage-quota`
//! (bytes), `storage-dir` (durable storage, relative to the manifest),
//! `dead-letter-actor` (the actor that receives every dead letter, by name),
//! `default-grants` (`"none"` or `"all"`: the grants of an actor that gives
//! none), `default-rate` (`{ messages-per-sec, burst }`: the quota of an actor
//! that gives none), `audit-capacity` (denials the audit trail keeps per shard).
//!
//! [`Manifest::run`] calls the system idle only when no message is in flight and no
//! request is open (so requests with timeouts end before the report).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::codec::{self, Codec};
use crate::{
    ActorStats, BuildError, Denial, Grants, LoadError, Rate, Restart, RestartPolicy, Runtime,
    RuntimeBuilder, SendError, SpawnError, SpawnOptions, Strategy, UpgradeError,
};

/// A parsed, checked manifest.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Manifest {
    /// Runtime settings.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// Actors to spawn, in order.
    #[serde(default, rename = "actor")]
    pub actors: Vec<ActorSpec>,
    /// Components registered for actors to spawn (`[[component]] name, path`).
    #[serde(default, rename = "component")]
    pub components: Vec<ComponentSpec>,
    /// Supervision groups: which actors are restarted together.
    #[serde(default, rename = "group")]
    pub groups: Vec<GroupSpec>,
    /// Messages the host sends once every actor is spawned, in order.
    #[serde(default, rename = "send")]
    pub sends: Vec<SendSpec>,
    /// Publications the host makes after the sends, in order.
    #[serde(default, rename = "publish")]
    pub publications: Vec<PublishSpec>,
    /// Components to swap in once the sends are made (while the actors may
    /// still be handling them), in order.
    #[serde(default, rename = "upgrade")]
    pub upgrades: Vec<UpgradeSpec>,
    /// The NATS bridge (`[nats] url, node`): the library only reads it; the
    /// `wasmshard` command connects the bridge (crate `wasmshard-nats`).
    pub nats: Option<NatsSection>,
    /// Local actors the bridge makes reachable from other nodes
    /// (`[[export]] name`).
    #[serde(default, rename = "export")]
    pub exports: Vec<ExportSpec>,
    /// Remote actors the bridge gives a local proxy address, registered as
    /// `name@node` (`[[import]] name, node`), before any actor is spawned.
    #[serde(default, rename = "import")]
    pub imports: Vec<ImportSpec>,
    /// The directory component paths are relative to.
    #[serde(skip)]
    pub base: PathBuf,
}

/// The `[nats]` table: where the bridge connects, and as what.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct NatsSection {
    /// The server (`nats://host:port`).
    pub url: String,
    /// This node's name in its cluster.
    pub node: String,
    /// The cluster (default `default`).
    pub cluster: Option<String>,
    /// The subjects' first tokens (default `wasmshard`).
    pub prefix: Option<String>,
    /// A run with a bridge serves until its time limit or Ctrl-C; with
    /// `quiet-ms`, it also ends once the system is idle and nothing has
    /// crossed the bridge for that long.
    pub quiet_ms: Option<u64>,
    /// The longest a request from NATS may wait for its answer here
    /// (`"5m"` unless given): a longer timeout from the wire is cut to it.
    pub max_request_timeout: Option<String>,
}

impl NatsSection {
    /// `max-request-timeout` as a duration (`None`: not given). Checked
    /// when the manifest is parsed.
    pub fn max_request_timeout(&self) -> Option<Duration> {
        self.max_request_timeout
            .as_deref()
            .and_then(|t| humantime::parse_duration(t).ok())
    }
}

/// An `[[export]]`: a local actor reachable from other nodes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ExportSpec {
    /// The actor's name.
    pub name: String,
}

/// An `[[import]]`: a remote actor with a local proxy, `name@node`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ImportSpec {
    /// The actor's name on its node.
    pub name: String,
    /// Its node.
    pub node: String,
}

impl ImportSpec {
    /// The proxy's local name, `name@node`.
    pub fn local_name(&self) -> String {
        format!("{}@{}", self.name, self.node)
    }
}

/// The `[runtime]` table.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(missing_docs)]
#[non_exhaustive]
pub struct RuntimeSection {
    pub shards: Option<usize>,
    pub mailbox_capacity: Option<u32>,
    pub max_payload: Option<usize>,
    pub epoch_tick_ms: Option<u64>,
    pub cpu_budget_ms: Option<u64>,
    pub memory_limit: Option<usize>,
    pub max_actors: Option<u32>,
    pub pin_cores: Option<bool>,
    pub batch: Option<u32>,
    pub ring_capacity: Option<usize>,
    pub drain_timeout_ms: Option<u64>,
    pub max_open_requests: Option<u32>,
    pub max_timers: Option<u32>,
    /// The share of the manifest's sends and publications that start a
    /// trace, 0 to 1.
    pub trace_sampling: Option<f64>,
    /// Names (patterns) of the actors whose messages are logged, one JSON
    /// line each.
    pub log_messages: Option<Vec<String>>,
    pub storage_quota: Option<usize>,
    /// Where durable storage lives (relative to the manifest); none: in memory.
    pub storage_dir: Option<PathBuf>,
    pub park_spin_us: Option<u64>,
    /// Bytes of a stopped actor's memory kept for the next (see
    /// `RuntimeBuilder::keep_resident`).
    pub keep_resident: Option<usize>,
    /// The longest spin an idle shard learns (see `RuntimeBuilder::park_spin_max`).
    pub park_spin_max_us: Option<u64>,
    /// The grants of an `[[actor]]` that gives none: `"none"` (the default) or
    /// `"all"`.
    pub default_grants: Option<DefaultGrants>,
    /// The quota of an `[[actor]]` that gives none (default: none).
    pub default_rate: Option<Rate>,
    /// Denials the audit trail keeps per shard (see
    /// `RuntimeBuilder::audit_capacity`).
    pub audit_capacity: Option<usize>,
    /// The actor that receives every dead letter (by name).
    pub dead_letter_actor: Option<String>,
}

/// `[runtime] default-grants`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DefaultGrants {
    /// Components reach no one until granted ([`Grants::none`]).
    None,
    /// Components reach everything ([`Grants::all`]).
    All,
}

/// One `[[actor]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ActorSpec {
    /// Unique name.
    pub name: String,
    /// Path of the component, relative to the manifest.
    pub component: PathBuf,
    /// Text passed to `init`.
    pub config: Option<String>,
    /// Shard to spawn on.
    pub shard: Option<usize>,
    /// The codecs the actor accepts (`raw`, `json`, `cbor`, `messagepack`):
    /// other payloads are refused at admission with `unsupported-codec`. Default:
    /// what the component declares, or any payload.
    pub accepts: Option<Vec<String>>,
    /// What it may reach: `grants = { send = ["worker-*"], request = ["db"] }`
    /// (see [`Grants`]). Default: `[runtime] default-grants`.
    pub grants: Option<Grants>,
    /// Its quota: `rate = { messages-per-sec = 10000, burst = 100 }`. Default:
    /// `[runtime] default-rate`.
    pub rate: Option<Rate>,
    /// `"never"` (the default) or `"on-failure"`: restarted in place (see
    /// [`Restart`]).
    pub restart: Option<RestartPolicy>,
    /// Restarts allowed within the window (default 5).
    #[serde(rename = "max-restarts")]
    pub max_restarts: Option<u32>,
    /// The window restarts are counted in, as `10s` or `500ms` (default `10s`).
    #[serde(rename = "restart-window")]
    pub restart_window: Option<String>,
    /// The wait before the second restart within the window (default `10ms`).
    pub backoff: Option<String>,
    /// The longest wait (default `1s`).
    #[serde(rename = "max-backoff")]
    pub max_backoff: Option<String>,
}

impl ActorSpec {
    /// Its restart policy, checked.
    ///
    /// # Errors
    ///
    /// [`ManifestError::Invalid`] for a duration that does not parse, a value
    /// out of range, or a supervision key without `restart = "on-failure"`.
    pub fn supervision(&self) -> Result<Restart, ManifestError> {
        restart_keys(
            &format!("actor `{}`", self.name),
            self.restart.unwrap_or_default(),
            [
                ("max-restarts", self.max_restarts.map(|n| n.to_string())),
                ("restart-window", self.restart_window.clone()),
                ("backoff", self.backoff.clone()),
                ("max-backoff", self.max_backoff.clone()),
            ],
        )
    }
}

/// One `[[upgrade]]`: replace an actor's component
/// ([`Runtime::upgrade`](crate::Runtime::upgrade)) once the sends are made.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct UpgradeSpec {
    /// The `[[actor]]` to upgrade.
    pub actor: String,
    /// Path of the new component, relative to the manifest.
    pub component: PathBuf,
}

/// One `[[component]]`: a component registered for actors to spawn by name
/// ([`Runtime::register_component`]).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ComponentSpec {
    /// The name actors spawn it by (and `spawn` grants name).
    pub name: String,
    /// Path of the component, relative to the manifest.
    pub path: PathBuf,
}

/// One `[[group]]`: a supervision group (see
/// [`Runtime::create_group`](crate::Runtime::create_group)).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct GroupSpec {
    /// Its name (a label).
    pub name: String,
    /// `"one-for-one"` (the default), `"one-for-all"` or `"rest-for-one"`.
    #[serde(default)]
    pub strategy: Strategy,
    /// Its members, `[[actor]]` names; their restart order ("started
    /// after") is the `[[actor]]` order. A member has no restart keys of its own.
    pub members: Vec<String>,
    /// The shard its members live on (default: a member's `shard`, or
    /// round-robin).
    pub shard: Option<usize>,
    /// Restarts allowed within the window, for the whole group (default 5).
    pub max_restarts: Option<u32>,
    /// The window, as `10s` (default).
    pub restart_window: Option<String>,
    /// The wait before the second restart within the window (default `10ms`).
    pub backoff: Option<String>,
    /// The longest wait (default `1s`).
    pub max_backoff: Option<String>,
}

impl GroupSpec {
    /// Its policy, checked.
    ///
    /// # Errors
    ///
    /// [`ManifestError::Invalid`] for a duration that does not parse or a value
    /// out of range.
    pub fn supervision(&self) -> Result<Restart, ManifestError> {
        restart_keys(
            &format!("group `{}`", self.name),
            RestartPolicy::OnFailure,
            [
                ("max-restarts", self.max_restarts.map(|n| n.to_string())),
                ("restart-window", self.restart_window.clone()),
                ("backoff", self.backoff.clone()),
                ("max-backoff", self.max_backoff.clone()),
            ],
        )
    }
}

/// A restart policy from its manifest keys (`max-restarts`,
/// `restart-window`, `backoff`, `max-backoff`, each as given), for `owner`.
fn restart_keys(
    owner: &str,
    policy: RestartPolicy,
    keys: [(&str, Option<String>); 4],
) -> Result<Restart, ManifestError> {
    let mut r = match policy {
        RestartPolicy::OnFailure => Restart::on_failure(),
        _ => Restart::never(),
    };
    if !r.restarts()
        && let Some((key, _)) = keys.iter().find(|(_, v)| v.is_some())
    {
        return Err(invalid(format!(
            "{owner}: `{key}` needs `restart = \"on-failure\"`"
        )));
    }
    let [(_, max), (_, window), (_, backoff), (_, max_backoff)] = keys;
    let duration = |key: &str, text: Option<String>, default: Duration| match text {
        None => Ok(default),
        Some(t) => humantime::parse_duration(&t).map_err(|e| ManifestError::Invalid {
            file: String::new(),
            what: format!("{owner}: {key} `{t}` is not a duration (say `500ms` or `2s`)"),
            source: Some(Box::new(e)),
        }),
    };
    if let Some(n) = max {
        // Written by `supervision` from a `u32`.
        r = r.max_restarts(n.parse().unwrap_or(u32::MAX));
    }
    r = r.window(duration("restart-window", window, r.window)?);
    let first = duration("backoff", backoff, r.backoff)?;
    let longest = duration("max-backoff", max_backoff, r.max_backoff)?;
    r = r.backoff(first, longest);
    r.check()
        .map_err(|e| invalid_because(format!("{owner}: the restart policy"), e))?;
    Ok(r)
}

/// One `[[send]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct SendSpec {
    /// Name of the target actor.
    pub to: String,
    /// UTF-8 payload.
    pub payload: Option<String>,
    /// Hex payload.
    pub payload_hex: Option<String>,
    /// A typed payload: JSON text, sent with the JSON codec's prefix (as the
    /// guest SDK and `Runtime::send_typed` write it), so actors written with the
    /// SDK decode it.
    pub json: Option<String>,
    /// How many times to send it (default 1).
    pub repeat: Option<u64>,
}

/// One `[[publish]]`: a publication by the host to a topic's subscribers
/// ([`Runtime::publish`](crate::Runtime::publish)).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[non_exhaustive]
pub struct PublishSpec {
    /// The topic (no pattern: a publication names one topic).
    pub topic: String,
    /// UTF-8 payload.
    pub payload: Option<String>,
    /// Hex payload.
    pub payload_hex: Option<String>,
    /// A typed payload: JSON text, with the JSON codec's prefix.
    pub json: Option<String>,
    /// How many times to publish it (default 1).
    pub repeat: Option<u64>,
}

impl PublishSpec {
    /// The payload bytes.
    ///
    /// # Errors
    ///
    /// As [`SendSpec::bytes`].
    pub fn bytes(&self) -> Result<Vec<u8>, ManifestError> {
        payload_bytes(
            &format!("publish to `{}`", self.topic),
            (&self.payload, &self.payload_hex, &self.json),
        )
    }
}

/// What is wrong with a manifest, or what went wrong running it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{file}: cannot read")]
    Read {
        /// The manifest file.
        file: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text is not TOML of the manifest's shape.
    #[error("{file}invalid manifest")]
    Parse {
        /// `"FILE: "`, or empty for text that came from no file.
        file: String,
        /// Where and why.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// Well-formed, but wrong: no actor, an actor named twice, a send to no
    /// actor, a bad payload.
    #[error("{file}invalid manifest: {what}")]
    Invalid {
        /// `"FILE: "`, or empty for text that came from no file.
        file: String,
        /// What is wrong.
        what: String,
        /// What caused it, if anything did (bad hex or JSON, say).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The `[runtime]` settings do not build a runtime.
    #[error("the [runtime] settings")]
    Build(#[source] BuildError),
    /// A component does not load.
    #[error("a component does not load")]
    Load(#[source] LoadError),
    /// An upgrade was refused or rolled back (the actor runs on as it was).
    #[error("actor `{name}` was not upgraded")]
    Upgrade {
        /// The actor.
        name: String,
        /// Why.
        #[source]
        source: UpgradeError,
    },
    /// A group cannot be made.
    #[error("group `{name}` cannot be made")]
    Group {
        /// The group.
        name: String,
        /// Why.
        #[source]
        source: SpawnError,
    },
    /// The run's start hook ([`RunOptions::on_start`], or
    /// [`RunOptions::on_spawned`]: the bridge, say) failed.
    #[error("the run could not start")]
    Start(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An actor does not spawn.
    #[error("actor `{name}` does not spawn")]
    Spawn {
        /// The actor.
        name: String,
        /// Why.
        #[source]
        source: SpawnError,
    },
    /// A `[[component]]` cannot be registered.
    #[error("component `{name}` cannot be registered")]
    Register {
        /// The name it is registered under.
        name: String,
        /// Why.
        #[source]
        source: SpawnError,
    },
}

fn invalid(what: String) -> ManifestError {
    ManifestError::Invalid {
        file: String::new(),
        what,
        source: None,
    }
}

/// A manifest that says something invalid, because of `source`.
fn invalid_because(
    what: String,
    source: impl std::error::Error + Send + Sync + 'static,
) -> ManifestError {
    ManifestError::Invalid {
        file: String::new(),
        what,
        source: Some(Box::new(source)),
    }
}

impl ManifestError {
    /// The same error, said of the manifest `file`.
    fn in_file(self, path: &Path) -> ManifestError {
        let file = format!("{}: ", path.display());
        match self {
            ManifestError::Parse { source, .. } => ManifestError::Parse { file, source },
            ManifestError::Invalid { what, source, .. } => {
                ManifestError::Invalid { file, what, source }
            }
            other => other,
        }
    }
}

impl SendSpec {
    /// The payload bytes.
    ///
    /// # Errors
    ///
    /// Not exactly one of `payload`, `payload-hex` and `json`; bad hex; text in
    /// `json` that is not JSON.
    pub fn bytes(&self) -> Result<Vec<u8>, ManifestError> {
        payload_bytes(
            &format!("send to `{}`", self.to),
            (&self.payload, &self.payload_hex, &self.json),
        )
    }
}

/// The payload of a `[[send]]` or `[[publish]]` (`what` says which, for errors).
fn payload_bytes(
    what: &str,
    given: (&Option<String>, &Option<String>, &Option<String>),
) -> Result<Vec<u8>, ManifestError> {
    match given {
        (Some(p), None, None) => Ok(p.as_bytes().to_vec()),
        (None, Some(h), None) => {
            let digits: String = h.chars().filter(|c| !c.is_whitespace()).collect();
            hex::decode(&digits).map_err(|e| ManifestError::Invalid {
                file: String::new(),
                what: format!("{what}: payload-hex `{h}` is not hex"),
                source: Some(Box::new(e)),
            })
        }
        (None, None, Some(json)) => {
            // Checked, then sent as written, after the JSON codec's prefix.
            codec::decode_body::<serde::de::IgnoredAny>(Codec::Json, json.as_bytes()).map_err(
                |e| ManifestError::Invalid {
                    file: String::new(),
                    what: format!("{what}: `json` is not JSON"),
                    source: Some(Box::new(e)),
                },
            )?;
            let mut bytes = Codec::Json.prefix().to_vec();
            bytes.extend_from_slice(json.as_bytes());
            Ok(bytes)
        }
        (None, None, None) => Err(invalid(format!(
            "{what}: give `payload`, `payload-hex` or `json`"
        ))),
        _ => Err(invalid(format!(
            "{what}: give one of `payload`, `payload-hex` and `json`, not several"
        ))),
    }
}

/// The largest manifest file read, in bytes.
const MAX_MANIFEST_SIZE: usize = 16 << 20;

impl Manifest {
    /// Reads and checks a manifest file.
    ///
    /// # Errors
    ///
    /// The file cannot be read (or is larger than 16 MiB, found without reading
    /// past that, or is not UTF-8), is not TOML of this shape, or names an actor
    /// twice, sends to an unknown actor, or has a bad payload.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Manifest, ManifestError> {
        let path = path.as_ref();
        let text = crate::component::read_at_most(path, MAX_MANIFEST_SIZE)
            .and_then(|bytes| {
                String::from_utf8(bytes)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            })
            .map_err(|source| ManifestError::Read {
                file: path.display().to_string(),
                source,
            })?;
        let mut m = Manifest::parse(&text).map_err(|e| e.in_file(path))?;
        m.base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(m)
    }

    /// Parses and checks manifest text; component paths are relative to the
    /// current directory.
    ///
    /// # Errors
    ///
    /// As [`Manifest::from_file`].
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let m: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            file: String::new(),
            source: Box::new(e),
        })?;
        if m.actors.is_empty() {
            return Err(invalid("it has no [[actor]]".into()));
        }
        let mut seen = HashMap::new();
        for (i, a) in m.actors.iter().enumerate() {
            if a.name.is_empty() {
                return Err(invalid(format!("actor #{} has an empty name", i + 1)));
            }
            if let Some(fault) = crate::config::name_fault(&a.name) {
                return Err(invalid(format!("actor #{} has {fault}", i + 1)));
            }
            if seen.insert(a.name.as_str(), i).is_some() {
                return Err(invalid(format!("two actors are named `{}`", a.name)));
            }
            if let Some(g) = &a.grants {
                g.check()
                    .map_err(|e| invalid_because(format!("actor `{}`: its grants", a.name), e))?;
            }
            if let Some(r) = &a.rate {
                r.check()
                    .map_err(|e| invalid_because(format!("actor `{}`: its rate", a.name), e))?;
            }
            a.supervision()?;
            for name in a.accepts.iter().flatten() {
                if Codec::from_name(name).is_none() {
                    return Err(invalid(format!(
                        "actor `{}` accepts `{name}`, which is no codec (raw, json, cbor, \
                         messagepack)",
                        a.name
                    )));
                }
            }
        }
        let mut registered = HashMap::new();
        for (i, c) in m.components.iter().enumerate() {
            if c.name.is_empty() {
                return Err(invalid("a [[component]] has an empty name".into()));
            }
            if let Some(fault) = crate::config::name_fault(&c.name) {
                return Err(invalid(format!("[[component]] #{} has {fault}", i + 1)));
            }
            if registered.insert(c.name.as_str(), ()).is_some() {
                return Err(invalid(format!("two components are named `{}`", c.name)));
            }
        }
        let mut grouped = HashMap::new();
        for g in &m.groups {
            g.supervision()?;
            let mut shard = g.shard;
            for member in &g.members {
                let Some(&i) = seen.get(member.as_str()) else {
                    return Err(invalid(format!(
                        "group `{}` has member `{member}`, which is no [[actor]]",
                        g.name
                    )));
                };
                if let Some(other) = grouped.insert(member.as_str(), g.name.as_str()) {
                    return Err(invalid(format!(
                        "actor `{member}` is a member of two groups, `{other}` and `{}`",
                        g.name
                    )));
                }
                let a = &m.actors[i];
                if a.supervision()?.restarts() {
                    return Err(invalid(format!(
                        "actor `{member}` is a member of group `{}`, which restarts it: it \
                         takes no restart keys of its own",
                        g.name
                    )));
                }
                match (shard, a.shard) {
                    (Some(s), Some(t)) if s != t => {
                        return Err(invalid(format!(
                            "group `{}` lives on shard {s}, but its member `{member}` is \
                             on shard {t}",
                            g.name
                        )));
                    }
                    (None, Some(t)) => shard = Some(t),
                    _ => {}
                }
            }
        }
        for u in &m.upgrades {
            if !seen.contains_key(u.actor.as_str()) {
                return Err(invalid(format!(
                    "upgrade of `{}`, which is no [[actor]]",
                    u.actor
                )));
            }
        }
        if let Some(t) = m.nats.as_ref().and_then(|n| n.max_request_timeout.as_ref())
            && let Err(e) = humantime::parse_duration(t)
        {
            return Err(invalid_because(
                format!("[nats] max-request-timeout `{t}` is not a duration (say `30s` or `5m`)"),
                e,
            ));
        }
        if m.nats.is_none() && !(m.exports.is_empty() && m.imports.is_empty()) {
            return Err(invalid(
                "[[export]] and [[import]] need a [nats] table (url, node)".into(),
            ));
        }
        let mut imported = HashMap::new();
        for i in &m.imports {
            if i.name.is_empty() || i.node.is_empty() {
                return Err(invalid("an [[import]] has an empty name or node".into()));
            }
            let local = i.local_name();
            if seen.contains_key(local.as_str()) || imported.insert(local.clone(), ()).is_some() {
                return Err(invalid(format!(
                    "`{local}` is imported twice, or also an [[actor]]"
                )));
            }
        }
        for e in &m.exports {
            if e.name.is_empty() {
                return Err(invalid("an [[export]] has an empty name".into()));
            }
        }
        for s in &m.sends {
            if !seen.contains_key(s.to.as_str()) && !imported.contains_key(s.to.as_str()) {
                return Err(invalid(format!(
                    "send to `{}`, which is no [[actor]] or [[import]]",
                    s.to
                )));
            }
            s.bytes()?;
        }
        for p in &m.publications {
            if crate::topics::parse(&p.topic, false).is_err() {
                return Err(invalid(format!(
                    "publish to `{}`: not a topic (one or more non-empty segments separated \
                     by `.`, no `*`, at most {} bytes)",
                    p.topic,
                    crate::MAX_TOPIC_LEN
                )));
            }
            p.bytes()?;
        }
        m.sends
            .iter()
            .try_fold(0u64, |n, s| n.checked_add(s.repeat.unwrap_or(1)))
            .ok_or_else(|| invalid("the sends' repeats add up to more than 2^64 − 1".into()))?;
        Ok(m)
    }

    /// A runtime builder with the `[runtime]` settings applied over the defaults.
    pub fn builder(&self) -> RuntimeBuilder {
        let r = &self.runtime;
        let mut b = Runtime::builder();
        if let Some(v) = r.shards {
            b = b.shards(v);
        }
        if let Some(v) = r.mailbox_capacity {
            b = b.mailbox_capacity(v);
        }
        if let Some(v) = r.max_payload {
            b = b.max_payload(v);
        }
        if let Some(v) = r.epoch_tick_ms {
            b = b.epoch_tick(Duration::from_millis(v));
        }
        if let Some(v) = r.cpu_budget_ms {
            b = b.cpu_budget((v > 0).then(|| Duration::from_millis(v)));
        }
        if let Some(v) = r.memory_limit {
            b = b.memory_limit(v);
        }
        if let Some(v) = r.max_actors {
            b = b.max_actors(v);
        }
        if let Some(v) = r.pin_cores {
            b = b.pin_cores(v);
        }
        if let Some(v) = r.batch {
            b = b.batch(v);
        }
        if let Some(v) = r.ring_capacity {
            b = b.ring_capacity(v);
        }
        if let Some(v) = r.drain_timeout_ms {
            b = b.drain_timeout(Duration::from_millis(v));
        }
        if let Some(v) = r.storage_quota {
            b = b.storage_quota(v);
        }
        if let Some(dir) = &r.storage_dir {
            b = b.storage_dir(self.base.join(dir));
        }
        if let Some(v) = r.max_open_requests {
            b = b.max_open_requests(v);
        }
        if let Some(v) = r.max_timers {
            b = b.max_timers(v);
        }
        if let Some(v) = r.trace_sampling {
            b = b.trace_sampling(v);
        }
        if let Some(v) = &r.log_messages {
            b = b.log_messages(v.iter().cloned());
        }
        if let Some(v) = r.park_spin_us {
            b = b.park_spin(Duration::from_micros(v));
        }
        if let Some(v) = r.park_spin_max_us {
            b = b.park_spin_max(Duration::from_micros(v));
        }
        if let Some(v) = r.keep_resident {
            b = b.keep_resident(v);
        }
        match r.default_grants {
            Some(DefaultGrants::All) => b = b.default_grants(Grants::all()),
            Some(DefaultGrants::None) | None => {}
        }
        if let Some(v) = r.default_rate {
            b = b.default_rate(Some(v));
        }
        if let Some(v) = r.audit_capacity {
            b = b.audit_capacity(v);
        }
        if let Some(v) = &r.dead_letter_actor {
            b = b.dead_letter_actor(v.clone());
        }
        b
    }

    /// Builds the runtime, spawns every actor, delivers the sends, runs until idle
    /// (or until `limit` passes), shuts down, and reports. As
    /// [`Manifest::run_with`] with only a time limit.
    ///
    /// # Errors
    ///
    /// A bad setting, a component that does not load, or an actor that does not spawn.
    pub fn run(
        &self,
        builder: RuntimeBuilder,
        limit: Option<Duration>,
    ) -> Result<RunReport, ManifestError> {
        let mut options = RunOptions::new();
        if let Some(limit) = limit {
            options = options.limit(limit);
        }
        self.run_with(builder, options)
    }

    /// Builds the runtime, spawns every actor, delivers the sends (retrying a full
    /// mailbox rather than dropping), runs until idle, shuts down, and reports.
    ///
    /// A run stops early when its time limit passes or its interrupt flag is set:
    /// the sends not made yet are counted as undelivered, and shutdown does not
    /// wait for a drain again (what is in flight is counted as dead letters).
    ///
    /// # Errors
    ///
    /// A bad setting, a component that does not load, or an actor that does not spawn.
    pub fn run_with(
        &self,
        builder: RuntimeBuilder,
        mut options: RunOptions,
    ) -> Result<RunReport, ManifestError> {
        // Declared before the runtime, so dropped after it: `on_finish` runs
        // once the runtime is shut down however the run ends (an error
        // included).
        let mut finish = Finish(options.finish.take());
        let runtime = builder.build().map_err(ManifestError::Build)?;
        let started = Instant::now();
        if let Some(start) = options.start.take() {
            start(&runtime).map_err(ManifestError::Start)?;
        }
        let mut groups = HashMap::new();
        for g in &self.groups {
            // The shard of the group, or of a member that names one (checked
            // to agree by `parse`).
            let shard = g.shard.or_else(|| {
                self.actors
                    .iter()
                    .filter(|a| g.members.contains(&a.name))
                    .find_map(|a| a.shard)
            });
            let group = runtime
                .create_group(&g.name, g.strategy, g.supervision()?, shard)
                .map_err(|source| ManifestError::Group {
                    name: g.name.clone(),
                    source,
                })?;
            for member in &g.members {
                groups.insert(member.as_str(), group.clone());
            }
        }
        let mut components = HashMap::new();
        for c in &self.components {
            let path = self.base.join(&c.path);
            if !components.contains_key(&path) {
                let loaded = runtime
                    .load_component_file(&path)
                    .map_err(ManifestError::Load)?;
                components.insert(path.clone(), loaded);
            }
            runtime
                .register_component(&c.name, &components[&path])
                .map_err(|source| ManifestError::Register {
                    name: c.name.clone(),
                    source,
                })?;
        }
        for a in &self.actors {
            let path = self.base.join(&a.component);
            if !components.contains_key(&path) {
                let c = runtime
                    .load_component_file(&path)
                    .map_err(ManifestError::Load)?;
                components.insert(path.clone(), c);
            }
            let mut opts = SpawnOptions::new(&a.name).config(a.config.clone().unwrap_or_default());
            if let Some(s) = a.shard {
                opts = opts.shard(s);
            }
            if let Some(names) = &a.accepts {
                // Checked by `parse`.
                opts = opts.accepts(names.iter().filter_map(|n| Codec::from_name(n)));
            }
            if let Some(g) = &a.grants {
                opts = opts.grants(g.clone());
            }
            if let Some(r) = a.rate {
                opts = opts.rate(Some(r));
            }
            opts = opts.restart(a.supervision()?);
            if let Some(group) = groups.get(a.name.as_str()) {
                opts = opts.group(group);
            }
            runtime
                .spawn(&components[&path], opts)
                .map_err(|source| ManifestError::Spawn {
                    name: a.name.clone(),
                    source,
                })?;
        }
        if let Some(spawned) = options.spawned.take() {
            spawned(&runtime).map_err(ManifestError::Start)?;
        }
        // A limit too far away to add to the clock is no limit.
        let deadline = options.limit.and_then(|l| started.checked_add(l));
        let stop = || {
            options
                .interrupt
                .as_ref()
                .is_some_and(|f| f.load(Ordering::Relaxed))
                || deadline.is_some_and(|d| Instant::now() >= d)
        };
        // (`parse` refuses repeats that add up past `u64::MAX`; fields changed
        // since are counted up to it.)
        let total = self
            .sends
            .iter()
            .fold(0u64, |n, s| n.saturating_add(s.repeat.unwrap_or(1)));
        let (mut delivered, mut refused) = (0u64, 0u64);
        'sends: for s in &self.sends {
            let payload = s.bytes()?;
            for _ in 0..s.repeat.unwrap_or(1) {
                // The host honours backpressure: a full mailbox is retried, not dropped.
                loop {
                    if stop() {
                        break 'sends;
                    }
                    let to = runtime.lookup(&s.to);
                    match to.map_or(Err(SendError::UnknownTarget), |to| {
                        runtime.send(to, &payload)
                    }) {
                        Ok(()) => {
                            delivered += 1;
                            break;
                        }
                        Err(SendError::MailboxFull) => {
                            std::thread::sleep(Duration::from_micros(50));
                        }
                        Err(e) => {
                            log::warn!("wasmshard: send to `{}` failed: {e}", s.to);
                            refused += 1;
                            break;
                        }
                    }
                }
            }
        }
        // Publications: each offered once to the subscribers of the moment
        // (a full mailbox refuses it, counted per topic; no retry).
        'publications: for p in &self.publications {
            let payload = p.bytes()?;
            for _ in 0..p.repeat.unwrap_or(1) {
                if stop() {
                    break 'publications;
                }
                if let Err(e) = runtime.publish(&p.topic, &payload) {
                    log::warn!("wasmshard: publish to `{}` failed: {e}", p.topic);
                }
            }
        }
        for u in &self.upgrades {
            if stop() {
                break;
            }
            let path = self.base.join(&u.component);
            if !components.contains_key(&path) {
                let loaded = runtime
                    .load_component_file(&path)
                    .map_err(ManifestError::Load)?;
                components.insert(path.clone(), loaded);
            }
            // An actor that ended before its upgrade (it failed on what it
            // was sent, say) is not upgraded; the report says how it ended.
            let ended = || {
                log::warn!(
                    "wasmshard: actor `{}` ended before its upgrade; not upgraded",
                    u.actor
                );
            };
            let Some(actor) = runtime.lookup(&u.actor) else {
                ended();
                continue;
            };
            match runtime.upgrade(actor, &components[&path]) {
                Ok(()) => {}
                Err(UpgradeError::UnknownTarget(_)) => ended(),
                Err(source) => {
                    return Err(ManifestError::Upgrade {
                        name: u.actor.clone(),
                        source,
                    });
                }
            }
        }
        let idle = loop {
            if stop() {
                break false;
            }
            let slice = deadline.map_or(Duration::from_millis(100), |d| {
                d.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100))
            });
            if runtime.wait_idle(slice) && !options.busy.as_mut().is_some_and(|busy| busy()) {
                break true;
            }
            if options.busy.is_some() {
                // Idle now, but the hook keeps the run going: look again
                // in a while rather than spin.
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        let interrupted = options
            .interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed));
        let audit = runtime.audit();
        let topics = runtime.topics();
        let report = if idle {
            runtime.shutdown()
        } else {
            runtime.shutdown_within(Duration::ZERO)
        };
        finish.run();
        let traced = report.stats.shards.iter().map(|s| s.traced).sum();
        Ok(RunReport {
            actors: report.stats.actors,
            dead_letters: report.dead_letter_count,
            traced,
            undelivered_sends: total.saturating_sub(delivered),
            refused_sends: refused,
            topics,
            audit,
            idle,
            interrupted,
            elapsed: started.elapsed(),
        })
    }
}

/// How a manifest run may end early (see [`Manifest::run_with`]), and what
/// an embedder adds to it.
#[derive(Default)]
pub struct RunOptions {
    limit: Option<Duration>,
    interrupt: Option<Arc<AtomicBool>>,
    start: Option<StartHook>,
    spawned: Option<StartHook>,
    busy: Option<Box<dyn FnMut() -> bool + Send>>,
    finish: Option<Box<dyn FnOnce() + Send>>,
}

/// Runs `on_finish` once: when the run ends, or when it is dropped on the
/// way out of a failed run.
struct Finish(Option<Box<dyn FnOnce() + Send>>);

impl Finish {
    fn run(&mut self) {
        if let Some(finish) = self.0.take() {
            finish();
        }
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.run();
    }
}

/// What runs once the runtime is built, before anything is spawned (or once
/// every actor is spawned).
type StartHook =
    Box<dyn FnOnce(&Runtime) -> Result<(), Box<dyn std::error::Error + Send + Sync>> + Send>;

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("limit", &self.limit)
            .field("interrupt", &self.interrupt)
            .field("start", &self.start.is_some())
            .field("spawned", &self.spawned.is_some())
            .field("busy", &self.busy.is_some())
            .field("finish", &self.finish.is_some())
            .finish()
    }
}

impl RunOptions {
    /// Run until idle, however long it takes.
    pub fn new() -> RunOptions {
        RunOptions::default()
    }

    /// Stop after `limit` even if the system is not idle.
    pub fn limit(mut self, limit: Duration) -> RunOptions {
        self.limit = Some(limit);
        self
    }

    /// Stop as soon as `flag` is set (by a Ctrl-C handler, say).
    pub fn interrupt(mut self, flag: Arc<AtomicBool>) -> RunOptions {
        self.interrupt = Some(flag);
        self
    }

    /// Runs `start` once the runtime is built, before any group, component
    /// or actor (a bridge that spawns proxies the actors will look up);
    /// its error ends the run with [`ManifestError::Start`].
    pub fn on_start(
        mut self,
        start: impl FnOnce(&Runtime) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
        + Send
        + 'static,
    ) -> RunOptions {
        self.start = Some(Box::new(start));
        self
    }

    /// Runs `spawned` once every actor is spawned, before the sends (a
    /// bridge that makes them reachable from other nodes); its error ends the
    /// run with [`ManifestError::Start`].
    pub fn on_spawned(
        mut self,
        spawned: impl FnOnce(&Runtime) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
        + Send
        + 'static,
    ) -> RunOptions {
        self.spawned = Some(Box::new(spawned));
        self
    }

    /// While `busy` says so, an idle system has not finished (work may still
    /// arrive from outside it): the run goes on until `busy` says `false`
    /// while idle, or the limit or interrupt ends it.
    pub fn busy(mut self, busy: impl FnMut() -> bool + Send + 'static) -> RunOptions {
        self.busy = Some(Box::new(busy));
        self
    }

    /// Runs `finish` when the run ends, once the runtime has shut down (also
    /// when the run fails after the runtime is built, once it is dropped).
    pub fn on_finish(mut self, finish: impl FnOnce() + Send + 'static) -> RunOptions {
        self.finish = Some(Box::new(finish));
        self
    }
}

/// What [`Manifest::run`] reports.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct RunReport {
    /// Every actor's final counters.
    pub actors: Vec<ActorStats>,
    /// Messages that could not be delivered.
    pub dead_letters: u64,
    /// Envelopes handled that carried a trace context (`trace-sampling`).
    pub traced: u64,
    /// Manifest sends (counting each repeat) that were not delivered into a
    /// mailbox: refused, or not made because the run stopped first.
    pub undelivered_sends: u64,
    /// Of those, sends the runtime refused (the target gone, say).
    pub refused_sends: u64,
    /// Every topic published to or subscribed to, with its counts.
    pub topics: Vec<crate::TopicStats>,
    /// The audit trail at the end of the run: the most recent denials.
    pub audit: Vec<Denial>,
    /// Whether the system became idle (rather than being stopped early).
    pub idle: bool,
    /// Whether the run was stopped by its interrupt flag (Ctrl-C).
    pub interrupted: bool,
    /// Wall-clock time from start to the end of shutdown (`elapsed_ns` in JSON).
    #[serde(rename = "elapsed_ns", serialize_with = "as_nanos")]
    pub elapsed: Duration,
}

fn as_nanos<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
