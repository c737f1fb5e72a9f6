//! The configuration: one TOML file, validated completely at start.
//!
//! Every section and key is optional; with no file at all calltap runs on the defaults
//! below (store in `./calltap-data`, API on 127.0.0.1:8080, operators discovered from
//! traffic). Unknown keys are errors, not warnings: a misspelt `secert_keys` silently
//! ignored would leave the API open or closed for reasons nobody can see. Every error
//! names the file, the line and the key (see [`ConfigError`]).
//!
//! Secrets may also come from the environment (`CALLTAP_SECRET_KEY`,
//! `CALLTAP_LINK_KEY`, comma-separated) and from files (`secret_keys_file`,
//! `link_keys_file`, one key per line). The process environment and the file system are
//! reached through [`Environment`], so tests can supply both.
//!
//! Relative paths (`store.path`, `*_file`, `tls_*`) are taken as written, i.e. relative
//! to the working directory, like every other path calltap is given.

mod check;
mod describe;
mod error;
pub mod filters;
mod integrations;
mod numbers;
mod properties;
mod security;
pub mod templates;
mod ui;
mod values;
mod webhooks;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use error::ConfigError;
pub use integrations::{
    compile_condition, templates as step_templates, HttpMethod, IntegrationConfig, SmtpConfig,
    SmtpSecurity, StepConfig, StepKind, CONTEXT_NAMES,
};
pub use numbers::NumbersConfig;
pub use properties::{PrefixMap, Property, PropertySource, PropertyType, SourceKind};
pub use security::{
    AcmeChallenge, AcmeConfig, KeyEntry, RateLimitConfig, LETS_ENCRYPT, LETS_ENCRYPT_STAGING,
};
pub use ui::UiConfig;
pub use values::{AddressSet, ByteSize, PortRange, SecretKey};
pub use webhooks::{
    is_endpoint_name, HeaderValueSource, SignatureDialect, WebhookConfig, EVENT_TYPES,
};

use error::{k, Locator, PathSeg};
use properties::PropertyEntry;

/// The longest `[api]` connection timeout accepted, in seconds (a year).
const MAX_TIMEOUT_SECS: u64 = 365 * 86_400;

/// Where `calltap` looks for its configuration when no path is given on the command line.
pub const DEFAULT_PATH: &str = "/etc/calltap/calltap.toml";
/// Extra API keys, comma-separated; added to `[api] secret_keys`.
pub const SECRET_KEY_ENV: &str = "CALLTAP_SECRET_KEY";
/// Extra link-signing keys, comma-separated; added after `[api] link_keys`.
pub const LINK_KEY_ENV: &str = "CALLTAP_LINK_KEY";

/// What the loader needs from the outside world: environment variables and files.
/// [`ProcessEnvironment`] is the real one; any `Fn(&str) -> Option<String>` is an
/// environment with those variables and the real file system.
pub trait Environment {
    /// The value of an environment variable, if set.
    fn var(&self, name: &str) -> Option<String>;

    /// Reads a whole file (the configuration itself, a `*_file` key's file).
    fn read_file(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// The process environment and the real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Environment for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// `[store]`: where records and recordings live, and how long.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The sled database and the `recordings/` folder. Default `./calltap-data`, so a
    /// first run from a checkout or a home directory needs no root and no setup; the
    /// packaged service sets `/var/lib/calltap`.
    pub path: PathBuf,
    /// Days a call record is kept; 0 keeps records forever. Default 0: a record is
    /// about a kilobyte, a million calls fit in a gigabyte, and deleting a customer's
    /// history is a decision for the administrator, not a default.
    pub keep_days: u32,
    /// Days a recording is kept; 0 keeps recordings forever (bounded by `max_disk` and
    /// `min_free`). Default 0, for the same reason as `keep_days`.
    pub recordings_keep_days: u32,
    /// Cap on the disk space used by recordings; the oldest are deleted past it.
    /// 0 or absent (the default) means no cap: `min_free` still protects the disk.
    #[serde(with = "values::optional_size")]
    pub max_disk: Option<ByteSize>,
    /// Free-space floor: below it, new audio is not written (records still are, so no
    /// call goes missing). Default 1GiB: room for sled to compact and for the host's
    /// own logs, while a full disk can still take about 17 hours of 8 kHz stereo audio.
    pub min_free: ByteSize,
    /// Most call events kept in the webhook outbox. Past it, events every endpoint has
    /// taken are pruned first, then the oldest undelivered ones are dropped (counted on
    /// /metrics and logged). Default 100000: about 150 MB, a day of a 10,000-call PBX
    /// (about five events a call) twice over, so an endpoint down for a day loses nothing.
    pub max_events: u64,
    /// Keep each call's SIP messages (bounded per call) for the console's ladder and
    /// pcap download. Default true: a few KiB a call.
    pub sip_messages: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("./calltap-data"),
            keep_days: 0,
            recordings_keep_days: 0,
            max_disk: None,
            min_free: ByteSize(ByteSize::GIB),
            max_events: 100_000,
            sip_messages: true,
        }
    }
}

/// `[api]`: the HTTP API the importer calls.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address and port to listen on. Default 127.0.0.1:8080: nothing is exposed to
    /// the network until the administrator decides to (a reverse proxy on the same
    /// host works as is).
    #[serde(with = "values::socket_addr")]
    pub listen: SocketAddr,
    /// Keys accepted in `X-Secret-Key`. Several at once, so a key can be rotated
    /// without downtime: add the new one, switch the importer, remove the old one.
    /// After loading this also holds the keys from `secret_keys_file` and
    /// `CALLTAP_SECRET_KEY`, in that order. Default none (every request gets 401).
    pub secret_keys: Vec<SecretKey>,
    /// A file with one API key per line (`#` starts a comment line), so keys can stay
    /// out of a world-readable configuration. Default none.
    pub secret_keys_file: Option<PathBuf>,
    /// Base of the recording links handed to the importer, as the importer reaches
    /// calltap (e.g. through a reverse proxy). Default none: derived from `listen`
    /// (see [`ApiConfig::link_base`]).
    #[serde(deserialize_with = "values::public_url::deserialize")]
    pub public_url: Option<String>,
    /// HMAC keys for signed recording links, kept apart from `secret_keys` so that
    /// rotating an API key does not break links already handed out, and a leaked link
    /// key gives no API access. The first key signs, all verify. After loading this
    /// also holds `link_keys_file` and `CALLTAP_LINK_KEY` keys, in that order.
    /// Default none: the API then signs with a random key made at start, so links stop
    /// working when calltap restarts.
    pub link_keys: Vec<SecretKey>,
    /// A file with one link key per line (`#` comments). Default none.
    pub link_keys_file: Option<PathBuf>,
    /// How long a recording link works, in seconds. Default 86400 (one day): the
    /// importer downloads right after asking, and a day covers its retries and
    /// queueing while keeping a leaked link short-lived.
    pub link_ttl_secs: u64,
    /// The widest `POST /calls` window accepted, in days. Default 31: one month, the
    /// longest an importer backfills in one request, and a bound on the work a single
    /// request can cause.
    pub max_window_days: u32,
    /// The largest request body accepted. Default 64KiB: a `POST /calls` with a long
    /// operator list and filters is a few kilobytes; anything near the limit is abuse.
    pub max_body_bytes: ByteSize,
    /// Seconds a client has to send a whole request head (request line and headers),
    /// from its first byte, or from the connection's start for its first request.
    /// Default 10: the importer's heads are under a kilobyte and arrive in one packet;
    /// 10 s covers a congested link many times over, while a client that trickles a
    /// head (or opens a connection and says nothing) no longer holds a slot for ever.
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a whole request body once its head has arrived;
    /// then 408 and the connection closes. Default 30: a body at `max_body_bytes`
    /// (64KiB) takes 30 s only below ~20 kbit/s.
    pub body_timeout_secs: u64,
    /// Seconds a kept-alive connection may wait for its next request before calltap
    /// closes it, and a client may leave an answer waiting without taking a byte of it
    /// (a peer gone without a word, or one that stopped reading). Default 60: long
    /// enough that an importer polling every minute or downloading a batch of
    /// recordings reuses its connection, short enough that idle connections do not pile
    /// up (HTTP clients reopen a closed one by themselves).
    pub idle_timeout_secs: u64,
    /// Connections open at once, from everyone; the next one gets 503 and is closed.
    /// Default 256: the importer uses a few (a poller and parallel downloads), and 256
    /// descriptors and a head buffer each stay far inside the service's 65536-file limit
    /// and an appliance's memory.
    pub max_connections: u64,
    /// Connections open at once from one source address, an IPv6 /64 counting as one
    /// (503 beyond). Default 64:
    /// several times what one importer opens, so one misbehaving host cannot take every
    /// slot. Behind a reverse proxy every connection comes from the proxy's address:
    /// set it to `max_connections` there.
    pub max_connections_per_source: u64,
    /// PEM certificate chain for built-in TLS; set with `tls_key`, or neither (plain
    /// HTTP, e.g. behind a TLS-terminating proxy). Re-read on SIGHUP and when the
    /// files change. Default none.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for built-in TLS. Default none.
    pub tls_key: Option<PathBuf>,
    /// With built-in TLS, a plain-HTTP address that answers every request with a
    /// redirect to https (and ACME's http-01 challenges). Default none.
    #[serde(with = "security::optional_addr")]
    pub redirect_listen: Option<SocketAddr>,
    /// `[api.acme]`: a certificate obtained and renewed automatically. Default none.
    pub acme: Option<AcmeConfig>,
    /// Sources (IPs or CIDR networks) the API answers; any other gets 403 before its
    /// key is looked at. Default empty: every source (the key alone guards the API).
    pub allow_from: AddressSet,
    /// `[[api.keys]]`: more API keys, each from a file, with a name and its own
    /// allow-list. Default none.
    pub keys: Vec<KeyEntry>,
    /// Reverse proxies whose `X-Forwarded-For` / `Forwarded` headers name the client;
    /// from any other peer those headers are ignored. Default none.
    pub trusted_proxies: AddressSet,
    /// Recording links work from any source, whatever `allow_from` says. Default true:
    /// the importer may download from a storage tier on other addresses than the ones
    /// that call the API, and a link is a signed, expiring credential of its own.
    pub links_from_anywhere: bool,
    /// Keys for `/metrics` and `/status` only (`Authorization: Bearer` or
    /// `X-Secret-Key`), accepted from any source. Default none.
    pub ops_keys: Vec<SecretKey>,
    /// A file with ops keys, one per line. Default none.
    pub ops_keys_file: Option<PathBuf>,
    /// Sources that reach `/metrics` (and `/status`, with a key) without an ops key.
    /// Default (unset): loopback plus `allow_from`.
    pub ops_from: Option<AddressSet>,
    /// `[api.rate_limit]`: requests per source and per key.
    pub rate_limit: RateLimitConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            secret_keys: Vec::new(),
            secret_keys_file: None,
            public_url: None,
            link_keys: Vec::new(),
            link_keys_file: None,
            link_ttl_secs: 86_400,
            max_window_days: 31,
            max_body_bytes: ByteSize(64 * ByteSize::KIB),
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            idle_timeout_secs: 60,
            max_connections: 256,
            max_connections_per_source: 64,
            tls_cert: None,
            tls_key: None,
            redirect_listen: None,
            acme: None,
            allow_from: AddressSet::default(),
            keys: Vec::new(),
            trusted_proxies: AddressSet::default(),
            links_from_anywhere: true,
            ops_keys: Vec::new(),
            ops_keys_file: None,
            ops_from: None,
            rate_limit: RateLimitConfig::default(),
        }
    }
}

impl ApiConfig {
    /// Whether the API serves HTTPS itself (certificate files or ACME).
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() || self.acme.is_some()
    }

    /// The base URL of recording links, without a trailing slash: `public_url` when
    /// set; with ACME, `https://` + its first domain (and the port, unless 443);
    /// otherwise `http(s)://` + `listen` (an unspecified listen address becomes
    /// loopback, since "0.0.0.0" is not an address a client can use).
    pub fn link_base(&self) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        if let Some(domain) = self.acme.as_ref().and_then(|a| a.domains.first()) {
            return match self.listen.port() {
                443 => format!("https://{domain}"),
                port => format!("https://{domain}:{port}"),
            };
        }
        let scheme = if self.tls() { "https" } else { "http" };
        let ip = match self.listen.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("{scheme}://{}", SocketAddr::new(ip, self.listen.port()))
    }

    /// The key that signs new links (the first link key), if any.
    pub fn signing_key(&self) -> Option<&SecretKey> {
        self.link_keys.first()
    }
}

/// `[capture]`: what live capture listens to and which ports carry SIP and RTP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    /// Interfaces for live capture (`calltap run`); replay ignores them. Default none:
    /// there is no interface name that is right on every host, so live capture asks
    /// for one rather than guessing.
    pub interfaces: Vec<String>,
    /// UDP/TCP ports SIP is recognised on. Default [5060, 5061]: the IANA SIP and
    /// SIP-over-TLS ports (TLS payload cannot be read, but the flows are counted).
    pub sip_ports: Vec<u16>,
    /// UDP ports RTP may use; a flow is RTP only when SDP announced it, so this is a
    /// cheap pre-filter. Default 1024-65535: every unprivileged port, since PBXs
    /// differ (Asterisk 10000-20000, FreeSWITCH 16384-32768) and phones pick their own.
    pub rtp_ports: PortRange,
    /// Put the interfaces in promiscuous mode. Default false: on the PBX host itself it
    /// is not needed; a SPAN/mirror port needs it, since mirrored frames are addressed
    /// to other machines and the NIC drops them otherwise.
    pub promiscuous: bool,
    /// Kernel ring per interface that holds packets until the capture thread reads
    /// them. Default 64MiB: about 2 s of 1,000 G.711 calls both ways (100 k packets/s
    /// of ~300 bytes with headers), enough to ride out a stall of the capture thread;
    /// raise it when `calltap_capture_total_kernel_drops` grows.
    pub ring_size: ByteSize,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            interfaces: Vec::new(),
            sip_ports: vec![5060, 5061],
            rtp_ports: PortRange::new(1024, 65535),
            promiscuous: false,
            ring_size: ByteSize(64 * ByteSize::MIB),
        }
    }
}

/// `[network]`: addresses that settle what user matching cannot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// The PBX's own addresses, used to pair the legs of a B2BUA. Default none: legs
    /// are then correlated by time, numbers and the correlation header only.
    pub pbx: AddressSet,
    /// SIP providers' addresses: a leg to or from them faces a client. Default none.
    pub trunks: AddressSet,
    /// Where the phones are: a leg to or from them faces an operator. Default none.
    pub internal: AddressSet,
}

/// `[calls]`: how calls are classified and when they end without a BYE.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallsConfig {
    /// Export operator-to-operator calls through `POST /calls`. Default false: the
    /// importer analyses conversations with clients; internal calls are still stored.
    pub export_internal: bool,
    /// An answered call still running after this many seconds is ended (whoHungUp
    /// "system"). Default 14400 (4 hours): longer than any real conversation, short
    /// enough that a lost BYE does not hold a dialog and a recording open for days.
    pub max_call_secs: u64,
    /// An INVITE without a final answer after this many seconds ends as missed.
    /// Default 300: far beyond any ring timer a PBX uses (typically 30-120 s).
    pub ring_timeout_secs: u64,
    /// An answered call with no RTP in either direction for this many seconds is
    /// ended. Default 300: holds without music-on-hold can be silent for minutes,
    /// and SIP session timers (RFC 4028) refresh within 30 minutes at most.
    pub media_timeout_secs: u64,
    /// A SIP header the dialplan adds to link the legs of one conversation (e.g.
    /// "X-Calltap-Link"). Default none: legs are correlated from addresses and time.
    pub correlation_header: Option<String>,
    /// Most dialogs tracked at once. Past it, a hundredth of them is dropped to make
    /// room (counted): the ones that never got a response first, then lingering and
    /// unanswered ones, answered calls only when nothing else is left. Default 100000:
    /// about 2.6 KB each, so a few hundred megabytes at most, and far above the
    /// concurrent calls of any PBX calltap sits beside.
    pub max_dialogs: usize,
    /// Most INVITEs awaiting any response at once. A PBX answers every INVITE within
    /// milliseconds (100 Trying), so INVITEs nobody answers are scanners, floods or
    /// half-seen traffic: past this many the oldest is ended at once, so a flood costs
    /// flat memory. Default 10000 (about 26 MB).
    pub max_no_response: usize,
    /// Of the INVITEs that ended with no response at all, records stored per source
    /// address and minute; the rest are counted per source (`/metrics`) and not
    /// stored. Default 10: enough to see what a scanner tries.
    pub no_response_per_source_per_minute: u32,
    /// The same, all sources together. Default 300 a minute.
    pub no_response_per_minute: u32,
    /// Numbers (or extensions) of voicemail: a call answered by one of them gives the
    /// call event `call.voicemail` instead of `call.answered`. Default none.
    pub voicemail: Vec<String>,
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            export_internal: false,
            max_call_secs: 14_400,
            ring_timeout_secs: 300,
            media_timeout_secs: 300,
            correlation_header: None,
            max_dialogs: 100_000,
            max_no_response: 10_000,
            no_response_per_source_per_minute: 10,
            no_response_per_minute: 300,
            voicemail: Vec::new(),
        }
    }
}

/// `[limits]`: bounds of the packet engine, so floods and garbage cannot exhaust memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most SIP-over-TCP streams reassembled at once. Default 10000: phones keep one
    /// connection each, so this covers ten thousand registered TCP phones.
    pub max_tcp_streams: usize,
    /// Reassembly buffer per TCP direction. Default 256KiB: several maximal SIP
    /// messages (a large INVITE with SDP is 2-8 KB; 64 KB is a generous maximum).
    pub tcp_buffer_bytes: ByteSize,
    /// A TCP stream without a segment for this many seconds is dropped. Default 600:
    /// longer than common SIP keep-alive and re-REGISTER intervals.
    pub tcp_idle_secs: u64,
    /// Most IP datagrams under reassembly at once. Default 1024: fragmented SIP is
    /// the odd large INVITE, so a thousand in flight means a flood.
    pub max_fragment_buffers: usize,
    /// An incomplete datagram is dropped after this many seconds. Default 30, like
    /// Linux's `ipfrag_time`.
    pub fragment_timeout_secs: u64,
    /// Total bytes held in fragment buffers. Default 16MiB: 256 maximal (64 KiB)
    /// datagrams, far more than legitimate traffic needs.
    pub max_fragmented_bytes: ByteSize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_tcp_streams: 10_000,
            tcp_buffer_bytes: ByteSize(256 * ByteSize::KIB),
            tcp_idle_secs: 600,
            max_fragment_buffers: 1024,
            fragment_timeout_secs: 30,
            max_fragmented_bytes: ByteSize(16 * ByteSize::MIB),
        }
    }
}

/// Opus storage's bit rate when none is set: 12 kbit/s for each party's mono stream,
/// SILK's wide-band speech rate.
pub const OPUS_DEFAULT_KBPS: u32 = 24;
/// Opus bit rates accepted, for both parties together: 6 kbit/s a party (SILK's floor)
/// to 128.
pub const OPUS_KBPS: std::ops::RangeInclusive<u32> = 12..=256;
/// MP3 storage's bit rate when none is set (plain stereo at 8 or 16 kHz).
pub const MP3_DEFAULT_KBPS: u32 = 32;

/// The recording file format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingFormat {
    /// Stereo 16-bit PCM WAV: what the importer plays and transcribes without
    /// conversion, and what can be written incrementally without an encoder.
    #[default]
    Wav,
    /// FLAC, lossless: the WAV is written as usual while the call runs, then encoded in
    /// the background (src/store/convert.rs); about a quarter of the bytes of the WAV.
    Flac,
    /// Ogg Opus at `bitrate_kbps` (default 24), each party a mono stream, encoded the
    /// same way.
    Opus,
    /// MP3 at `bitrate_kbps` (default 32), encoded the same way; only in a build with
    /// the `mp3` feature (LAME, LGPL-3.0).
    #[cfg(feature = "mp3")]
    Mp3,
}

impl<'de> Deserialize<'de> for RecordingFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        values::parse_str(d, "a recording format", |text| match text {
            "wav" => Ok(RecordingFormat::Wav),
            "flac" => Ok(RecordingFormat::Flac),
            "opus" => Ok(RecordingFormat::Opus),
            #[cfg(feature = "mp3")]
            "mp3" => Ok(RecordingFormat::Mp3),
            #[cfg(not(feature = "mp3"))]
            "mp3" => Err(
                "\"mp3\" is not built in this binary (the `mp3` cargo feature, LAME under \
                 LGPL-3.0): use \"opus\", \"flac\" or \"wav\""
                    .to_string(),
            ),
            other => Err(format!(
                "{other:?} is not a recording format: \"wav\" (stereo 16-bit PCM), \
                 \"flac\" (lossless, about a quarter of the size), \"opus\" or \"mp3\" \
                 (lossy, a tenth or less)"
            )),
        })
    }
}

/// `[recording]`: whether and how audio is written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingConfig {
    /// Write recordings. Default true: recordings are half of what the importer asks for.
    pub enabled: bool,
    /// File format: "wav" (default), "flac", "opus" or "mp3".
    pub format: RecordingFormat,
    /// Bit rate of "opus" (default 24) or "mp3" (default 32), kbit/s.
    pub bitrate_kbps: Option<u32>,
    /// Calls in Opus recorded at 48 kHz (its full band) rather than 16 kHz.
    pub opus_fullband: bool,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            enabled: true,
            format: RecordingFormat::Wav,
            bitrate_kbps: None,
            opus_fullband: false,
        }
    }
}

/// An `[[operators]]` entry: a person (or a desk) whose calls are attributed to them.
/// Operators not listed are discovered from traffic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// Stable unique id, served as `operatorId` and in `/contacts`.
    pub id: String,
    /// Display name, served as `operatorName`.
    pub name: String,
    /// The internal extension (matched against SIP users of the phone leg).
    #[serde(default)]
    pub extension: Option<String>,
    /// The operator's direct number, as written; compare it through
    /// [`NumbersConfig::normalize_number`].
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub department: Option<String>,
}

/// The whole configuration, validated.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    pub store: StoreConfig,
    pub api: ApiConfig,
    pub capture: CaptureConfig,
    pub network: NetworkConfig,
    pub numbers: NumbersConfig,
    pub calls: CallsConfig,
    pub limits: LimitsConfig,
    pub recording: RecordingConfig,
    pub operators: Vec<Operator>,
    pub properties: Vec<Property>,
    /// `[[webhooks]]`: endpoints sent call events.
    pub webhooks: Vec<WebhookConfig>,
    /// `[ui]`: the administrator's web console.
    pub ui: UiConfig,
    /// `[[integrations]]`: workflows run on call events.
    pub integrations: Vec<IntegrationConfig>,
    /// `[smtp]`: where integration e-mails go.
    pub smtp: Option<SmtpConfig>,
    /// Where this configuration came from (a path, or "built-in defaults"), for messages.
    #[serde(skip)]
    pub origin: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            store: StoreConfig::default(),
            api: ApiConfig::default(),
            capture: CaptureConfig::default(),
            network: NetworkConfig::default(),
            numbers: NumbersConfig::default(),
            calls: CallsConfig::default(),
            limits: LimitsConfig::default(),
            recording: RecordingConfig::default(),
            operators: Vec::new(),
            properties: Vec::new(),
            webhooks: Vec::new(),
            ui: UiConfig::default(),
            integrations: Vec::new(),
            smtp: None,
            origin: "built-in defaults".into(),
        }
    }
}

/// The file as written; [`FileConfig::check`] turns it into a [`Config`].
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    store: StoreConfig,
    api: ApiConfig,
    capture: CaptureConfig,
    network: NetworkConfig,
    numbers: NumbersConfig,
    calls: CallsConfig,
    limits: LimitsConfig,
    recording: RecordingConfig,
    operators: Vec<Operator>,
    properties: Vec<PropertyEntry>,
    webhooks: Vec<WebhookConfig>,
    ui: UiConfig,
    integrations: Vec<IntegrationConfig>,
    smtp: Option<SmtpConfig>,
}

impl Config {
    /// Loads the configuration the daemon runs with: the file at `path` (or the
    /// defaults when `None`), plus secrets from the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with(path, &ProcessEnvironment)
    }

    /// [`Config::load`] with the environment and file system supplied.
    pub fn load_with(path: Option<&Path>, env: &dyn Environment) -> Result<Config, ConfigError> {
        match path {
            None => {
                let mut config = Config::default();
                config.add_env_keys(env);
                Ok(config)
            }
            Some(path) => {
                let text = env.read_file(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Config::from_toml_with(&text, &path.display().to_string(), env)
            }
        }
    }

    /// Parses and validates `text`; `origin` names it in errors. Files named by
    /// `*_file` keys are read from the file system; environment variables are not
    /// consulted (that is [`Config::load`]'s job).
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with(text, origin, &|_: &str| None::<String>)
    }

    /// [`Config::from_toml`] with the environment and file system supplied; secrets
    /// from environment variables are added.
    pub fn from_toml_with(
        text: &str,
        origin: &str,
        env: &dyn Environment,
    ) -> Result<Config, ConfigError> {
        let loc = Locator::new(origin, text);
        let file: FileConfig = toml::from_str(text).map_err(|e| loc.toml_error(&e))?;
        let mut config = file.check(&loc)?;
        config.read_key_files(&loc, env)?;
        config.add_env_keys(env);
        config.origin = origin.to_owned();
        Ok(config)
    }

    fn read_key_files(
        &mut self,
        loc: &Locator<'_>,
        env: &dyn Environment,
    ) -> Result<(), ConfigError> {
        let api = &mut self.api;
        for (key, file, keys) in [
            (
                "secret_keys_file",
                &api.secret_keys_file,
                &mut api.secret_keys,
            ),
            ("link_keys_file", &api.link_keys_file, &mut api.link_keys),
            ("ops_keys_file", &api.ops_keys_file, &mut api.ops_keys),
        ] {
            let Some(file) = file else { continue };
            let at = [k("api"), k(key)];
            let text = env
                .read_file(file)
                .map_err(|e| loc.file_error(&at, file.clone(), e))?;
            let found = text
                .lines()
                .map(str::trim)
                .filter(|line| !line.starts_with('#'))
                .filter_map(SecretKey::new)
                .collect::<Vec<_>>();
            if found.is_empty() {
                return Err(loc.error(
                    &at,
                    format!(
                        "{} holds no key (one key per line; lines starting with # are comments)",
                        file.display()
                    ),
                ));
            }
            add_keys(keys, found);
        }
        for (i, entry) in api.keys.iter_mut().enumerate() {
            let at = [k("api"), k("keys"), PathSeg::Index(i), k("key_file")];
            let text = env
                .read_file(&entry.key_file)
                .map_err(|e| loc.file_error(&at, entry.key_file.clone(), e))?;
            let found: Vec<SecretKey> = text
                .lines()
                .map(str::trim)
                .filter(|line| !line.starts_with('#'))
                .filter_map(SecretKey::new)
                .collect();
            if found.is_empty() {
                return Err(loc.error(
                    &at,
                    format!(
                        "{} holds no key (one key per line; lines starting with # are comments)",
                        entry.key_file.display()
                    ),
                ));
            }
            entry.keys = found;
        }
        webhooks::read_files(&mut self.webhooks, loc, env)?;
        integrations::read_files(&mut self.integrations, self.smtp.as_mut(), loc, env)?;
        Ok(())
    }

    fn add_env_keys(&mut self, env: &dyn Environment) {
        for (var, keys) in [
            (SECRET_KEY_ENV, &mut self.api.secret_keys),
            (LINK_KEY_ENV, &mut self.api.link_keys),
        ] {
            if let Some(value) = env.var(var) {
                add_keys(keys, value.split(',').filter_map(SecretKey::new));
            }
        }
    }

    /// Settings that load but are probably not what the administrator wants.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let a = &self.api;
        if a.secret_keys.is_empty() {
            out.push(format!(
                "no secret key: every integration request will get 401 \
                 (set [api] secret_keys, secret_keys_file or {SECRET_KEY_ENV})"
            ));
        } else if a
            .secret_keys
            .iter()
            .any(|k| k.expose().chars().count() < 16)
        {
            out.push("a secret key is shorter than 16 characters: easy to guess".into());
        }
        if a.link_keys.is_empty() {
            out.push(format!(
                "no link key: recording links are signed with a key made at start and \
                 stop working when calltap restarts (set [api] link_keys, link_keys_file \
                 or {LINK_KEY_ENV})"
            ));
        }
        if a.public_url.is_none() && a.listen.ip().is_unspecified() {
            out.push(format!(
                "public_url is not set: recording links will point at {}, which the \
                 importer cannot reach",
                a.link_base()
            ));
        }
        let behind_tls = a
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
        out.extend(security::warnings(a));
        if a.tls()
            && a.public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("http://"))
        {
            out.push(
                "public_url is http:// but the API serves HTTPS: recording links would not \
                 work"
                    .into(),
            );
        }
        if a.listen.ip().is_loopback() && behind_tls && a.trusted_proxies.is_empty() && !a.tls() {
            out.push(
                "public_url is https but the API listens on loopback: behind a reverse proxy \
                 on this host set trusted_proxies = [\"127.0.0.1\"], or every client looks \
                 like 127.0.0.1 (allow-lists, rate limits and ops_from then see the proxy)"
                    .into(),
            );
        }
        if !a.listen.ip().is_loopback() && !a.tls() && !behind_tls {
            out.push(format!(
                "the API listens on {} without TLS: keys and recordings cross the \
                 network in clear",
                a.listen
            ));
        }
        for hook in &self.webhooks {
            if hook.secret.is_none() {
                out.push(format!(
                    "webhook {}: no secret, so deliveries are not signed and a receiver cannot \
                     tell them from forgeries",
                    hook.name
                ));
            }
            if hook.url.starts_with("http://") {
                out.push(format!(
                    "webhook {}: plain http: call data crosses the network in clear",
                    hook.name
                ));
            }
        }
        let s = &self.store;
        if s.keep_days > 0 && (s.recordings_keep_days == 0 || s.recordings_keep_days > s.keep_days)
        {
            out.push(
                "recordings are kept longer than their call records, which no API serves".into(),
            );
        }
        out
    }
}

/// Why `name` names no `what` (a webhook, an integration) of `names`, the configured
/// ones, for a command given a name.
pub fn no_such_entry<'a>(
    what: &str,
    name: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    if names.is_empty() {
        format!("no {what} is named {name:?}: none is configured")
    } else {
        format!(
            "no {what} is named {name:?}; the {what}s are {}",
            names.join(", ")
        )
    }
}

fn add_keys(keys: &mut Vec<SecretKey>, more: impl IntoIterator<Item = SecretKey>) {
    for key in more {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
}
