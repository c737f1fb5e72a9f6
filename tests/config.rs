//! The configuration as an administrator meets it: the shipped example, the defaults,
//! and the error messages a mistake produces (file, line and key in every one).

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use calltap::config::{
    ByteSize, Config, ConfigError, Environment, PortRange, PropertySource, PropertyType,
    RecordingFormat,
};

const EXAMPLE: &str = include_str!("../config/calltap.toml");

/// Environment variables and files, all in memory.
#[derive(Default)]
struct FakeEnv {
    vars: HashMap<String, String>,
    files: HashMap<PathBuf, String>,
}

impl FakeEnv {
    fn var(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }
    fn file(mut self, path: &str, text: &str) -> Self {
        self.files.insert(path.into(), text.into());
        self
    }
}

impl Environment for FakeEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }
    fn read_file(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
    }
}

fn parse(text: &str) -> Config {
    Config::from_toml(text, "calltap.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// Asserts that `text` is rejected with an error on `line` that names `key`, and
/// returns the message for further checks.
fn rejected(text: &str, line: usize, key: &str) -> String {
    let err =
        Config::from_toml(text, "calltap.toml").expect_err("the configuration must be rejected");
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("calltap.toml line {line}: ")),
        "wrong line in: {shown}"
    );
    assert_eq!(err.line(), Some(line), "{shown}");
    assert!(shown.contains(key), "{key:?} missing from: {shown}");
    assert!(!shown.contains('\n'), "one line expected: {shown:?}");
    shown
}

/// The example with every commented-out setting (`#key = ...`, `#[[operators]]`)
/// switched on; explanations (`# ...`) stay comments.
fn example_uncommented() -> String {
    EXAMPLE
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest)
                if rest.starts_with('[') || rest.starts_with(|c: char| c.is_ascii_lowercase()) =>
            {
                rest
            }
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_as_shipped_is_the_defaults() {
    let config =
        Config::from_toml(EXAMPLE, "config/calltap.toml").unwrap_or_else(|e| panic!("{e}"));
    let defaults = Config {
        origin: "config/calltap.toml".into(),
        ..Config::default()
    };
    assert_eq!(config, defaults);
}

#[test]
fn the_example_with_every_setting_switched_on_is_valid() {
    let env = FakeEnv::default()
        .file(
            "/etc/calltap/secret-keys",
            "# rotated 2024-03\nfile-key-1\n\nfile-key-2\n",
        )
        .file("/etc/calltap/link-keys", "file-link-key\n")
        .file("/etc/calltap/ops-keys", "file-ops-key\n")
        .file(
            "/etc/calltap/importer-key",
            "importer-key-1\nimporter-key-2\n",
        )
        .file("/etc/calltap/smtp-password", "smtp-pw\n");
    let config = Config::from_toml_with(&example_switched_on(), "calltap.toml", &env)
        .unwrap_or_else(|e| panic!("{e}"));
    let acme = config.api.acme.as_ref().expect("[api.acme] switched on");
    assert_eq!(acme.domains, ["calltap.example.com"]);
    assert_eq!(
        acme.contact_url().as_deref(),
        Some("mailto:admin@example.com")
    );
    assert_eq!(acme.directory_url(), calltap::config::LETS_ENCRYPT);
    assert_eq!(config.api.keys.len(), 1);
    assert_eq!(config.api.keys[0].keys.len(), 2);
    assert_eq!(config.api.ops_keys.len(), 2, "inline and from the file");
    assert!(config
        .api
        .allow_from
        .contains("203.0.113.9".parse().unwrap()));
    assert!(config.api.trusted_proxies.contains("::1".parse().unwrap()));
    assert_eq!(config.store.path, PathBuf::from("./calltap-data"));
    assert_eq!(
        config.api.secret_keys.len(),
        4,
        "two inline and two from the file"
    );
    assert_eq!(
        config.api.link_keys[0].expose(),
        "link-key",
        "the inline key signs"
    );
    assert_eq!(config.api.link_base(), "https://calltap.example.com");
    assert_eq!(config.capture.interfaces, ["eth1"]);
    assert!(config.network.pbx.contains("10.0.0.5".parse().unwrap()));
    assert!(config
        .network
        .trunks
        .contains("203.0.113.77".parse().unwrap()));
    assert_eq!(config.numbers.country_code.as_deref(), Some("380"));
    assert_eq!(
        config.calls.correlation_header.as_deref(),
        Some("X-Calltap-Link")
    );
    assert_eq!(config.operators.len(), 1);
    assert_eq!(config.operators[0].department.as_deref(), Some("Sales"));
    assert_eq!(config.properties.len(), 3);
    assert_eq!(config.properties[0].kind, PropertyType::Enum);
    assert_eq!(
        config.properties[1].source,
        PropertySource::Header("X-Queue".into())
    );
    let PropertySource::ClientPrefix(prefixes) = &config.properties[2].source else {
        panic!("client_prefix expected");
    };
    assert_eq!(prefixes.lookup("+380441234567"), Some("Kyiv"));
    let crm = &config.integrations[0];
    assert_eq!(crm.steps.len(), 3);
    assert_eq!(crm.steps[0].save["lead_id"], "/id");
    let smtp = config.smtp.as_ref().expect("[smtp] switched on");
    assert_eq!(smtp.password.as_ref().map(|p| p.expose()), Some("smtp-pw"));
}

/// The example with every setting switched on, except its own certificate files:
/// those and `[api.acme]` are alternatives, and the switched-on example takes ACME.
fn example_switched_on() -> String {
    example_uncommented()
        .lines()
        .filter(|line| !line.starts_with("tls_cert =") && !line.starts_with("tls_key ="))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every key of every section (and of an operator and a property entry) must appear
/// in the example, commented out or not, so the example documents the whole file.
#[test]
fn the_example_mentions_every_key() {
    let env = FakeEnv::default()
        .file("/etc/calltap/secret-keys", "k1\n")
        .file("/etc/calltap/link-keys", "k2\n");
    let env = env
        .file("/etc/calltap/ops-keys", "k3\n")
        .file("/etc/calltap/importer-key", "k4\n")
        .file("/etc/calltap/smtp-password", "k5\n");
    let config = Config::from_toml_with(&example_switched_on(), "calltap.toml", &env).unwrap();
    let value = serde_json::to_value(&config).unwrap();
    let mut in_struct = BTreeSet::new();
    // Tables inside a section (`[api.acme]`, `[[api.keys]]`) are sections of their own.
    fn keys_of(section: &str, body: &serde_json::Value, out: &mut BTreeSet<String>) {
        let body = match body {
            serde_json::Value::Array(entries) => &entries[0],
            other => other,
        };
        for (key, value) in body.as_object().unwrap() {
            let nested = match value {
                serde_json::Value::Object(_) => true,
                serde_json::Value::Array(items) => items.first().is_some_and(|i| i.is_object()),
                _ => false,
            };
            if nested {
                keys_of(&format!("{section}.{key}"), value, out);
            } else {
                out.insert(format!("{section}.{key}"));
            }
        }
    }
    for (section, body) in value.as_object().unwrap() {
        keys_of(section, body, &mut in_struct);
    }
    assert!(
        in_struct.contains("api.secret_keys_file") && in_struct.contains("properties.prefixes")
    );

    let mut in_example = BTreeSet::new();
    let mut section = String::new();
    for line in EXAMPLE.lines() {
        let line = line.strip_prefix('#').unwrap_or(line);
        if let Some(header) = line.strip_prefix('[') {
            section = header.trim_matches(|c| c == '[' || c == ']').to_owned();
        } else if let Some((key, _)) = line.split_once(" = ") {
            if key.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !key.is_empty() {
                in_example.insert(format!("{section}.{key}"));
            }
        }
    }
    let missing: Vec<_> = in_struct.difference(&in_example).collect();
    assert!(
        missing.is_empty(),
        "keys missing from config/calltap.toml: {missing:?}"
    );
}

#[test]
fn an_empty_file_and_no_file_are_the_defaults() {
    let config = parse("");
    assert_eq!(
        config,
        Config {
            origin: "calltap.toml".into(),
            ..Config::default()
        }
    );
    let config = Config::load_with(None, &FakeEnv::default()).unwrap();
    assert_eq!(config.store.path, PathBuf::from("./calltap-data"));
    assert_eq!(config.api.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.api.link_base(), "http://127.0.0.1:8080");
    assert_eq!(config.api.link_ttl_secs, 86_400);
    assert_eq!(config.api.max_window_days, 31);
    assert_eq!(config.api.max_body_bytes, ByteSize(65_536));
    assert_eq!(config.store.min_free, ByteSize(1 << 30));
    assert_eq!(config.store.max_disk, None);
    assert_eq!(config.capture.sip_ports, [5060, 5061]);
    assert_eq!(config.capture.rtp_ports, PortRange::new(1024, 65535));
    assert_eq!(config.calls.max_call_secs, 14_400);
    assert_eq!(config.calls.max_dialogs, 100_000);
    assert_eq!(config.limits.tcp_buffer_bytes, ByteSize(256 * 1024));
    assert_eq!(config.limits.max_fragmented_bytes, ByteSize(16 << 20));
    assert_eq!(config.recording.format, RecordingFormat::Wav);
    assert!(config.operators.is_empty() && config.properties.is_empty());
    assert!(config
        .describe()
        .contains("operators: none configured, discovered from traffic"));
}

#[test]
fn an_unknown_top_level_key_names_it_and_its_line() {
    let msg = rejected(
        "[store]\npath = \"/var/lib/calltap\"\n\nverbose = true\n",
        4,
        "verbose",
    );
    // `verbose` written after [store] belongs to [store]; at the very top it is top-level.
    assert!(msg.contains("[store] verbose"), "{msg}");
    rejected("\n# top\nverbose = true\n[store]\n", 3, "verbose");
    rejected("[stroe]\npath = \"x\"\n", 1, "stroe");
}

#[test]
fn an_unknown_key_in_a_section_names_it_and_its_line() {
    let msg = rejected(
        "[api]\nlisten = \"127.0.0.1:8080\"\n\nsecert_keys = [\"k\"]\n",
        4,
        "[api] secert_keys",
    );
    assert!(msg.contains("unknown field"), "{msg}");
}

#[test]
fn an_unknown_key_in_an_operator_entry_names_it_and_its_line() {
    let text = r#"
[[operators]]
id = "op-101"
name = "Alice"
extension = "101"

[[operators]]
id = "op-102"
name = "Bob"
extention = "102"
"#;
    rejected(text, 10, "[[operators]] #2 extention");
}

#[test]
fn a_bad_socket_address_names_key_line_and_value() {
    let text = "[store]\npath = \"/var/lib/calltap\"\n\n[api]\n# local only\n\nlisten = \"127.0.0.1:99999\"\n";
    let msg = rejected(text, 7, "[api] listen");
    assert!(
        msg.contains("\"127.0.0.1:99999\" is not a socket address"),
        "{msg}"
    );
}

#[test]
fn a_bad_cidr_points_at_its_entry_in_a_multi_line_list() {
    let text = "[network]\ninternal = [\n  \"10.0.0.0/16\",\n  \"10.1.0.0/33\",\n]\n";
    let msg = rejected(text, 4, "[network] internal");
    assert!(msg.contains("10.1.0.0/33"), "{msg}");
    rejected("[network]\npbx = [\"10.0.0.300\"]\n", 2, "[network] pbx");
}

#[test]
fn a_bad_size_names_key_and_line() {
    let msg = rejected("[store]\nmax_disk = \"20 gigs\"\n", 2, "[store] max_disk");
    assert!(msg.contains("is not a size"), "{msg}");
    rejected(
        "[limits]\nmax_fragmented_bytes = -1\n",
        2,
        "[limits] max_fragmented_bytes",
    );
}

#[test]
fn sizes_take_units_and_plain_bytes() {
    let config = parse("[store]\nmax_disk = \"20GiB\"\nmin_free = \"500MB\"\n[api]\nmax_body_bytes = 4096\n[limits]\ntcp_buffer_bytes = \"1.5MiB\"\n");
    assert_eq!(config.store.max_disk, Some(ByteSize(20 << 30)));
    assert_eq!(config.store.min_free, ByteSize(500_000_000));
    assert_eq!(config.api.max_body_bytes, ByteSize(4096));
    assert_eq!(config.limits.tcp_buffer_bytes, ByteSize(3 << 19));
    assert_eq!(
        parse("[store]\nmax_disk = 0\n").store.max_disk,
        None,
        "0 means no cap"
    );
    assert_eq!(ByteSize(20 << 30).to_string(), "20GiB");
}

#[test]
fn an_enum_property_without_values_is_rejected() {
    let text = r#"
[[properties]]
key = "Department"
type = "enum"
source = "department"
"#;
    let msg = rejected(text, 4, "[[properties]] #1 type");
    assert!(msg.contains("values"), "{msg}");
    rejected(
        "[[properties]]\nkey = \"Dept\"\ntype = \"enum\"\nvalues = []\nsource = \"department\"\n",
        4,
        "values",
    );
    rejected(
        "[[properties]]\nkey = \"Dept\"\ntype = \"string\"\nvalues = [\"a\"]\nsource = \"department\"\n",
        4,
        "[[properties]] #1 values",
    );
}

#[test]
fn a_number_property_cannot_come_from_the_codec() {
    let text = r#"
[[properties]]
key = "Codec"
type = "string"
source = "codec"

[[properties]]
key = "Quality"
type = "number"
source = "codec"
"#;
    let msg = rejected(text, 10, "[[properties]] #2 source");
    assert!(msg.contains("string or enum"), "{msg}");
    rejected(
        "[[properties]]\nkey = \"Queue\"\ntype = \"string\"\nsource = \"header\"\n",
        4,
        "source",
    );
    rejected(
        "[[properties]]\nkey = \"City\"\ntype = \"enum\"\nvalues = [\"Kyiv\"]\nsource = \"client_prefix\"\nprefixes = { \"38032\" = \"Lviv\" }\n",
        6,
        "prefixes",
    );
}

#[test]
fn a_duplicate_operator_id_is_rejected_on_its_second_line() {
    let text = r#"[[operators]]
id = "op-101"
name = "Alice"
extension = "101"

[[operators]]
id = "op-101"
name = "Bob"
extension = "102"
"#;
    let msg = rejected(text, 7, "[[operators]] #2 id");
    assert!(msg.contains("already the id of operator #1"), "{msg}");
    rejected(
        "[[operators]]\nid = \"a\"\nname = \"Alice\"\n",
        1,
        "[[operators]] #1",
    );
}

#[test]
fn a_duplicate_property_key_is_rejected_on_its_second_line() {
    let text = r#"[[properties]]
key = "Ring"
type = "number"
source = "ring_seconds"

[[properties]]
key = "Ring"
type = "number"
source = "talk_seconds"
"#;
    rejected(text, 7, "[[properties]] #2 key");
}

#[test]
fn other_values_are_checked_with_their_line() {
    let opus = Config::from_toml("[recording]\nformat = \"opus\"\n", "calltap.toml")
        .expect("opus is a format");
    assert_eq!(opus.recording.format, RecordingFormat::Opus);
    let low = rejected(
        "[recording]\nformat = \"opus\"\nbitrate_kbps = 8\n",
        3,
        "[recording] bitrate_kbps",
    );
    assert!(low.contains("6 kbit/s a party"), "{low}");
    let mp3 = Config::from_toml(
        "[recording]\nformat = \"mp3\"\nbitrate_kbps = 24\n",
        "calltap.toml",
    )
    .expect("mp3 is a format (the mp3 feature is on in tests)");
    assert_eq!(mp3.recording.bitrate_kbps, Some(24));
    let rate = rejected(
        "[recording]\nformat = \"mp3\"\nbitrate_kbps = 20\n",
        3,
        "[recording] bitrate_kbps",
    );
    assert!(rate.contains("one of"), "{rate}");

    let ogg = rejected("[recording]\nformat = \"ogg\"\n", 2, "[recording] format");
    assert!(ogg.contains("\"flac\""), "{ogg}");
    let flac = Config::from_toml("[recording]\nformat = \"flac\"\n", "calltap.toml")
        .expect("flac is a format");
    assert_eq!(flac.recording.format, RecordingFormat::Flac);
    rejected("[api]\ntls_cert = \"/etc/cert.pem\"\n", 2, "[api] tls_cert");
    rejected(
        "[capture]\nrtp_ports = \"20000-10000\"\n",
        2,
        "[capture] rtp_ports",
    );
    rejected(
        "[capture]\nsip_ports = [5060, 70000]\n",
        2,
        "[capture] sip_ports",
    );
    rejected("[calls]\nmax_dialogs = 0\n", 2, "[calls] max_dialogs");
    rejected(
        "[numbers]\ncountry_code = \"+380\"\n",
        2,
        "[numbers] country_code",
    );
    rejected(
        "[api]\npublic_url = \"calltap.example.com\"\n",
        2,
        "[api] public_url",
    );
    rejected("[store]\npath = \"x\"\n[store\n", 3, "invalid table header");
    let msg = rejected("store = 5\n", 1, "store");
    assert!(msg.ends_with("expected a table"), "{msg}");
}

#[test]
fn port_ranges_are_written_as_text_or_a_table() {
    let config = parse("[capture]\nrtp_ports = { start = 10000, end = 20000 }\n");
    assert_eq!(config.capture.rtp_ports, PortRange::new(10000, 20000));
    assert!(config.capture.rtp_ports.contains(15000) && !config.capture.rtp_ports.contains(5060));
    assert_eq!(
        parse("[capture]\nrtp_ports = \"16384-32768\"\n")
            .capture
            .rtp_ports,
        PortRange::new(16384, 32768)
    );
}

#[test]
fn address_sets_take_hosts_and_networks() {
    let config =
        parse("[network]\npbx = [\"10.0.0.5\", \"2001:db8::1\"]\ninternal = [\"10.0.0.0/16\"]\n");
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(config.network.pbx.contains(ip("10.0.0.5")));
    assert!(
        !config.network.pbx.contains(ip("10.0.0.6")),
        "a bare address is one host"
    );
    assert!(config.network.pbx.contains(ip("2001:db8::1")));
    assert!(config.network.internal.contains(ip("10.0.255.1")));
    assert!(
        config.network.internal.contains(ip("::ffff:10.0.3.4")),
        "IPv4-mapped IPv6"
    );
    assert!(!config.network.internal.contains(ip("10.1.0.1")));
}

#[test]
fn secrets_from_the_environment_are_added_after_the_file() {
    let env = FakeEnv::default()
        .var("CALLTAP_SECRET_KEY", "env-key-1, env-key-2,,")
        .var("CALLTAP_LINK_KEY", "env-link");
    let config = Config::from_toml_with(
        "[api]\nsecret_keys = [\"file-key\", \"env-key-1\"]\n",
        "calltap.toml",
        &env,
    )
    .unwrap();
    let keys: Vec<_> = config.api.secret_keys.iter().map(|k| k.expose()).collect();
    assert_eq!(
        keys,
        ["file-key", "env-key-1", "env-key-2"],
        "duplicates are dropped"
    );
    assert_eq!(
        config.api.signing_key().map(|k| k.expose()),
        Some("env-link")
    );

    let config = Config::load_with(None, &env).unwrap();
    assert_eq!(
        config.api.secret_keys.len(),
        2,
        "no file: defaults plus environment"
    );

    let plain = Config::from_toml("", "calltap.toml").unwrap();
    assert!(
        plain.api.secret_keys.is_empty(),
        "from_toml does not read the environment"
    );
}

#[test]
fn secret_key_files_are_read_and_their_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("secret-keys");
    std::fs::write(
        &keys,
        "# the importer's key\nkey-from-file\n\n  second-key  \n",
    )
    .unwrap();
    let text = format!(
        "[api]\nsecret_keys_file = {:?}\n",
        keys.display().to_string()
    );
    let config = parse(&text);
    let found: Vec<_> = config.api.secret_keys.iter().map(|k| k.expose()).collect();
    assert_eq!(found, ["key-from-file", "second-key"]);

    let missing = dir.path().join("nope");
    let text = format!(
        "[api]\n\nlink_keys_file = {:?}\n",
        missing.display().to_string()
    );
    let err = Config::from_toml(&text, "calltap.toml").unwrap_err();
    assert!(matches!(err, ConfigError::File { .. }));
    let shown = err.to_string();
    assert!(
        shown.starts_with("calltap.toml line 3: [api] link_keys_file: cannot read "),
        "{shown}"
    );
    assert!(shown.contains(&missing.display().to_string()), "{shown}");

    std::fs::write(&keys, "# nothing yet\n").unwrap();
    let text = format!(
        "[api]\nsecret_keys_file = {:?}\n",
        keys.display().to_string()
    );
    rejected(&text, 2, "[api] secret_keys_file");
}

#[test]
fn secrets_never_show_in_debug_or_describe() {
    let env = FakeEnv::default().var("CALLTAP_LINK_KEY", "link-very-secret-value");
    let config = Config::from_toml_with(
        "[api]\nsecret_keys = [\"api-very-secret-value\", \"api-other-secret-value\"]\n",
        "calltap.toml",
        &env,
    )
    .unwrap();
    let debug = format!("{config:?}");
    let summary = config.describe();
    let json = serde_json::to_string(&config).unwrap();
    for shown in [&debug, &summary, &json] {
        assert!(
            !shown.contains("very-secret") && !shown.contains("other-secret"),
            "{shown}"
        );
    }
    assert!(debug.contains("<redacted>"));
    assert!(summary.contains("2 secret keys, 1 link key"), "{summary}");
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calltap.toml");
    std::fs::write(
        &path,
        "[api]\nlisten = \"0.0.0.0:9000\"\npublic_url = \"https://calls.example.com/\"\n",
    )
    .unwrap();
    let config = Config::load_with(Some(&path), &FakeEnvWithDisk).unwrap();
    assert_eq!(config.api.listen.port(), 9000);
    assert_eq!(config.api.link_base(), "https://calls.example.com");
    assert!(
        !config.warnings().iter().any(|w| w.contains("without TLS")),
        "an https public_url means a TLS proxy fronts the API"
    );

    std::fs::write(&path, "[api]\nlisten = \"nope\"\n").unwrap();
    let shown = Config::load_with(Some(&path), &FakeEnvWithDisk)
        .unwrap_err()
        .to_string();
    assert!(
        shown.starts_with(&format!("{} line 2: [api] listen", path.display())),
        "{shown}"
    );

    let err =
        Config::load_with(Some(&dir.path().join("absent.toml")), &FakeEnvWithDisk).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
}

/// No environment variables, the real file system.
struct FakeEnvWithDisk;

impl Environment for FakeEnvWithDisk {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}
