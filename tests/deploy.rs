//! Deployment as an administrator meets it: the systemd unit, the packaged default
//! configuration and packaging/install.sh, checked without touching the real system
//! (the unit is verified from a copy, the install script runs under a staging root).

#[path = "support/skip.rs"]
mod skip;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The service's settings, by section, each key with every value it is given (systemd
/// keys such as SystemCallFilter= may repeat).
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn parse_unit(source: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = String::new();
    for line in source.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a unit setting: {line}"));
        unit.entry(section.clone())
            .or_default()
            .entry(key.trim().to_owned())
            .or_default()
            .push(value.trim().to_owned());
    }
    unit
}

fn unit() -> Unit {
    parse_unit(&read(&repo("systemd/calltap.service")))
}

fn one<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a str {
    match unit
        .get(section)
        .and_then(|s| s.get(key))
        .map(Vec::as_slice)
    {
        Some([value]) => value,
        other => panic!("[{section}] {key}= should be set once, is {other:?}"),
    }
}

/// A copy of the unit, named as installed, whose ExecStart runs the binary this test
/// build made: `systemd-analyze verify` needs ExecStart's program to exist, and CI has
/// no /usr/bin/calltap.
fn unit_for_this_build(dir: &Path) -> PathBuf {
    let source = read(&repo("systemd/calltap.service"));
    let installed = "ExecStart=/usr/bin/calltap ";
    assert!(source.contains(installed), "ExecStart is {installed}...");
    let copy = source.replace(
        installed,
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_calltap")),
    );
    let path = dir.join("calltap.service");
    fs::write(&path, copy).expect("write the unit copy");
    path
}

fn systemd_analyze(args: &[&str]) -> Option<Output> {
    match Command::new("systemd-analyze").args(args).output() {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            skip::skip("systemd-analyze is absent (apt-get install systemd); skipped");
            None
        }
        Err(e) => panic!("systemd-analyze: {e}"),
    }
}

#[test]
fn the_unit_runs_calltap_as_a_watched_notify_service() {
    let u = unit();
    let expect = [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("WatchdogSec", "30s"),
        ("Restart", "on-failure"),
        (
            "ExecStart",
            "/usr/bin/calltap run --config /etc/calltap/calltap.toml",
        ),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("User", "calltap"),
        ("Group", "calltap"),
        ("StateDirectory", "calltap"),
        ("ConfigurationDirectory", "calltap"),
        ("WorkingDirectory", "/var/lib/calltap"),
    ];
    for (key, value) in expect {
        assert_eq!(one(&u, "Service", key), value, "[Service] {key}=");
    }
    assert!(u["Service"].contains_key("RestartSec"));
    // SIGTERM finalises calls in progress and flushes the store: a few seconds.
    let stop = one(&u, "Service", "TimeoutStopSec");
    let stop: u64 = stop
        .trim_end_matches('s')
        .parse()
        .expect("TimeoutStopSec in s");
    assert!((10..=60).contains(&stop), "TimeoutStopSec={stop}s");
    assert_eq!(one(&u, "Install", "WantedBy"), "multi-user.target");
}

#[test]
fn the_unit_grants_only_cap_net_raw_and_keeps_the_hardening() {
    let u = unit();
    let s = &u["Service"];
    for key in ["AmbientCapabilities", "CapabilityBoundingSet"] {
        assert_eq!(one(&u, "Service", key), "CAP_NET_RAW", "{key}=");
    }
    let mut families: Vec<&str> = one(&u, "Service", "RestrictAddressFamilies")
        .split_whitespace()
        .collect();
    families.sort_unstable();
    assert_eq!(
        families,
        ["AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET", "AF_UNIX"]
    );
    let expect = [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictRealtime", "yes"),
        ("SystemCallArchitectures", "native"),
        ("UMask", "0027"),
    ];
    for (key, value) in expect {
        assert_eq!(one(&u, "Service", key), value, "[Service] {key}=");
    }
    assert!(s["SystemCallFilter"].iter().any(|v| v == "@system-service"));
    let files: u64 = one(&u, "Service", "LimitNOFILE").parse().expect("a number");
    assert!(files >= 4096, "LimitNOFILE={files}");
    // Capture must see the host's interfaces, and CAP_NET_RAW must count in the host's
    // network namespace: no private network, no user namespace, no dynamic user (whose
    // state would not be the packaged /var/lib/calltap owner).
    for key in [
        "PrivateNetwork",
        "PrivateUsers",
        "DynamicUser",
        "IPAddressDeny",
    ] {
        assert!(
            !s.contains_key(key),
            "{key}= would break live capture or the API"
        );
    }
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_for_this_build(dir.path());
    let unit = unit.to_str().expect("utf-8 path");
    let Some(out) = systemd_analyze(&["verify", unit]) else {
        return;
    };
    // verify exits 0 on an unknown key or a bad value, only warning: any output fails.
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // The hardening as systemd scores it (0 best, 10 worst): 1.6 when written.
    let Some(out) = systemd_analyze(&[
        "security",
        "--offline=yes",
        "--threshold=20",
        "--no-pager",
        unit,
    ]) else {
        return;
    };
    assert!(
        out.status.success(),
        "exposure above 2.0:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn verify_catches_a_misspelt_unit_key() {
    // The check above is only worth having if a mistake in the unit makes it fail.
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_for_this_build(dir.path());
    let broken = read(&unit).replace("ProtectHome=yes", "ProtectHom=yes");
    fs::write(&unit, broken).expect("write");
    let Some(out) = systemd_analyze(&["verify", unit.to_str().expect("utf-8 path")]) else {
        return;
    };
    assert!(
        text(&out.stderr).contains("ProtectHom"),
        "verify said nothing of the misspelt key: {}",
        text(&out.stderr)
    );
}

#[test]
fn the_packaged_config_is_the_example_with_the_service_paths() {
    let out = Command::new("sh")
        .arg(repo("packaging/make-config.sh"))
        .output()
        .expect("sh runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout) == read(&repo("packaging/calltap.toml")),
        "packaging/calltap.toml is out of date with config/calltap.toml: \
         run `sh packaging/make-config.sh > packaging/calltap.toml`"
    );
}

/// `config` with its /etc/calltap files (the key files) moved under `etc`, written there
/// as check.toml.
fn config_in(etc: &Path, config: &str) -> PathBuf {
    let config = config.replace("\"/etc/calltap/", &format!("\"{}/", etc.display()));
    let path = etc.join("check.toml");
    fs::write(&path, config).expect("write config");
    path
}

fn packaged_config_in(etc: &Path) -> PathBuf {
    config_in(etc, &read(&repo("packaging/calltap.toml")))
}

fn check_config(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_calltap"))
        .arg("check-config")
        .arg("--config")
        .arg(config)
        .env_remove("CALLTAP_CONFIG")
        .env_remove("CALLTAP_SECRET_KEY")
        .env_remove("CALLTAP_LINK_KEY")
        .output()
        .expect("calltap runs")
}

#[test]
fn the_packaged_config_passes_check_config_with_its_key_files() {
    let etc = tempfile::tempdir().expect("tempdir");
    fs::write(etc.path().join("secret-keys"), "# API\n0123456789abcdef\n").expect("keys");
    fs::write(etc.path().join("link-keys"), "fedcba9876543210\n").expect("keys");
    let out = check_config(&packaged_config_in(etc.path()));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{}", stdout, text(&out.stderr));
    assert!(stdout.contains("store: /var/lib/calltap;"), "{stdout}");
    assert!(stdout.contains("1 secret key, 1 link key;"), "{stdout}");
    assert!(!stdout.contains("warning"), "{stdout}");
}

#[test]
fn the_packaged_config_without_its_key_file_names_the_file() {
    let etc = tempfile::tempdir().expect("tempdir");
    let out = check_config(&packaged_config_in(etc.path()));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let missing = etc.path().join("secret-keys");
    assert!(
        stderr.contains("secret_keys_file") && stderr.contains(&missing.display().to_string()),
        "{stderr}"
    );
}

fn install_sh(args: &[&str]) -> Output {
    Command::new("sh")
        .arg(repo("packaging/install.sh"))
        .args(args)
        .output()
        .expect("sh runs")
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn install_sh_lays_out_the_service_and_keeps_config_and_keys_on_a_rerun() {
    let root = tempfile::tempdir().expect("tempdir");
    let r = root.path();
    let dest = r.to_str().expect("utf-8 path");
    let binary = env!("CARGO_BIN_EXE_calltap");
    let args = ["--destdir", dest, "--binary", binary, "--interface", "eth9"];
    let out = install_sh(&args);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    let expect = [
        ("usr/bin/calltap", 0o755),
        ("lib/systemd/system/calltap.service", 0o644),
        ("usr/share/doc/calltap/install.md", 0o644),
        ("etc/calltap", 0o755),
        ("etc/calltap/calltap.toml", 0o640),
        ("etc/calltap/secret-keys", 0o640),
        ("etc/calltap/link-keys", 0o640),
        ("var/lib/calltap", 0o750),
    ];
    for (path, want) in expect {
        assert_eq!(mode(&r.join(path)), want, "mode of {path}");
    }
    assert_eq!(
        fs::read(r.join("usr/bin/calltap")).expect("binary"),
        fs::read(binary).expect("binary")
    );
    assert_eq!(
        read(&r.join("lib/systemd/system/calltap.service")),
        read(&repo("systemd/calltap.service"))
    );
    let keys = read(&r.join("etc/calltap/secret-keys"));
    let key: Vec<&str> = keys.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(
        matches!(key.as_slice(), [k] if k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit())),
        "one random 256-bit key: {keys}"
    );
    assert_ne!(keys, read(&r.join("etc/calltap/link-keys")));

    // The staged configuration, with its key files, is what calltap accepts.
    let staged = read(&r.join("etc/calltap/calltap.toml"));
    assert!(staged.lines().any(|l| l == r#"interfaces = ["eth9"]"#));
    let etc = r.join("etc/calltap");
    let out = check_config(&config_in(&etc, &staged));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("capture: interfaces eth9;"), "{stdout}");

    // A second run is an upgrade: configuration and keys stay as they were.
    let config_before = read(&r.join("etc/calltap/calltap.toml"));
    fs::write(
        r.join("etc/calltap/calltap.toml"),
        config_before.clone() + "# edited\n",
    )
    .expect("edit");
    let out = install_sh(&["--destdir", dest, "--binary", binary]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("kept the existing"));
    assert_eq!(
        read(&r.join("etc/calltap/calltap.toml")),
        config_before + "# edited\n"
    );
    assert_eq!(read(&r.join("etc/calltap/secret-keys")), keys);

    // Uninstall removes the program, keeps configuration, keys and data.
    fs::write(r.join("var/lib/calltap/marker"), "data").expect("data");
    let out = install_sh(&["--destdir", dest, "--uninstall"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!r.join("usr/bin/calltap").exists());
    assert!(!r.join("lib/systemd/system/calltap.service").exists());
    assert!(!r.join("usr/share/doc/calltap").exists());
    for kept in [
        "etc/calltap/calltap.toml",
        "etc/calltap/secret-keys",
        "var/lib/calltap/marker",
    ] {
        assert!(r.join(kept).exists(), "{kept} was removed");
    }
}

#[test]
fn install_sh_refuses_what_it_cannot_do() {
    let root = tempfile::tempdir().expect("tempdir");
    let dest = root.path().to_str().expect("utf-8 path");
    let binary = env!("CARGO_BIN_EXE_calltap");
    for (args, says) in [
        (
            vec![
                "--destdir",
                dest,
                "--binary",
                binary,
                "--interface",
                "eth0; rm -rf /",
            ],
            "not an interface name",
        ),
        (vec!["--destdir", dest, "--frobnicate"], "unknown option"),
        (
            vec!["--destdir", dest, "--binary", "/nonexistent/calltap"],
            "not an executable",
        ),
    ] {
        let out = install_sh(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(
        fs::read_dir(root.path()).expect("dir").next().is_none(),
        "a refused install left files behind"
    );
}

#[test]
fn the_package_unit_and_config_agree_on_paths() {
    let manifest: toml::Value =
        toml::from_str(&read(&repo("Cargo.toml"))).expect("Cargo.toml parses");
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets: Vec<(&str, &str)> = deb["assets"]
        .as_array()
        .expect("assets")
        .iter()
        .filter_map(|a| Some((a.get(0)?.as_str()?, a.get(1)?.as_str()?)))
        .collect();
    // The unit's --config is where the package puts the default configuration (under
    // /etc, so dpkg keeps an administrator's edits as a conffile).
    assert!(assets.contains(&("packaging/calltap.toml", "etc/calltap/calltap.toml")));
    assert!(assets.contains(&("target/release/calltap", "usr/bin/")));
    let u = unit();
    assert!(one(&u, "Service", "ExecStart").ends_with("--config /etc/calltap/calltap.toml"));
    // The packaged store is the unit's StateDirectory, the only writable place.
    let config: toml::Value =
        toml::from_str(&read(&repo("packaging/calltap.toml"))).expect("config parses");
    let state = format!("/var/lib/{}", one(&u, "Service", "StateDirectory"));
    assert_eq!(config["store"]["path"].as_str(), Some(state.as_str()));
    // Its key files are in the unit's ConfigurationDirectory, made by postinst.
    let etc = format!("/etc/{}/", one(&u, "Service", "ConfigurationDirectory"));
    let postinst = read(&repo("packaging/debian/postinst"));
    for key in ["secret_keys_file", "link_keys_file"] {
        let file = config["api"][key].as_str().expect(key);
        assert!(file.starts_with(&etc), "{key} = {file}");
        assert!(postinst.contains(file), "postinst does not make {file}");
    }
    // cargo-deb puts its systemd snippets where each script says #DEBHELPER#.
    let scripts = deb["maintainer-scripts"]
        .as_str()
        .expect("maintainer-scripts");
    for script in ["postinst", "postrm"] {
        let path = repo(scripts).join(script);
        assert!(read(&path).contains("#DEBHELPER#"), "{}", path.display());
        assert_eq!(
            mode(&path) & 0o111,
            0o111,
            "{} is not executable",
            path.display()
        );
    }
    assert_eq!(
        deb["systemd-units"]["unit-scripts"].as_str(),
        Some("systemd/")
    );
}
