#!/bin/sh
# Installs calltap as a systemd service from a source checkout (docs/install.md).
#
#   cargo build --release --no-default-features --bin calltap && sudo packaging/install.sh [--interface eth1]
#   sudo packaging/install.sh --uninstall
#
# Safe to run again (an upgrade): the binary and the unit are replaced, the
# configuration and the keys are never overwritten, a running service is restarted.
# --uninstall removes the binary, the unit and the docs; /etc/calltap, /var/lib/calltap
# (calls and recordings) and the calltap user stay.
#
# Options:
#   --binary FILE     the calltap binary to install (default target/release/calltap,
#                     built with `cargo build --release --no-default-features --bin calltap` when absent)
#   --interface NAME  capture interface written into a newly installed configuration
#   --destdir DIR     install under DIR instead of / (staging, packaging, tests): no
#                     user is created, no ownership is changed, systemd is not touched
#   --no-start        install and enable, but do not (re)start the service
#   --uninstall       remove what an install put in place, keeping data and config
set -eu

say() { printf '%s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

src=$(cd "$(dirname "$0")/.." && pwd)
destdir=
binary=
interface=
start=yes
action=install
while [ $# -gt 0 ]; do
  case "$1" in
    --destdir) [ $# -ge 2 ] || die "--destdir needs a directory"; destdir=$2; shift 2 ;;
    --binary) [ $# -ge 2 ] || die "--binary needs a file"; binary=$2; shift 2 ;;
    --interface) [ $# -ge 2 ] || die "--interface needs a name"; interface=$2; shift 2 ;;
    --no-start) start=no; shift ;;
    --uninstall) action=uninstall; shift ;;
    -h|--help) sed -n '2,/^set -eu$/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
case "$interface" in
  *[!A-Za-z0-9._:@-]*) die "--interface $interface: not an interface name" ;;
esac

# Only a real install (no --destdir) creates the user, sets ownership and talks to
# systemd; a staged one only lays out files with their modes.
real=no
if [ -z "$destdir" ]; then
  real=yes
  [ "$(id -u)" -eq 0 ] || die "run as root (sudo $0), or stage with --destdir DIR"
fi
root=${destdir%/}
bin=$root/usr/bin/calltap
unit=$root/lib/systemd/system/calltap.service
doc=$root/usr/share/doc/calltap
etc=$root/etc/calltap
state=$root/var/lib/calltap
# systemd is PID 1 (the check sd_booted() makes).
systemd=no
[ "$real" = yes ] && [ -d /run/systemd/system ] && systemd=yes

if [ "$action" = uninstall ]; then
  if [ "$systemd" = yes ]; then
    systemctl disable --now calltap.service 2>/dev/null || true
  fi
  rm -f "$bin" "$unit"
  rm -rf "$doc"
  [ "$systemd" = yes ] && systemctl daemon-reload
  say "removed $bin, $unit and $doc"
  say "kept $etc (configuration, keys) and $root/var/lib/calltap (calls, recordings)"
  say "and the calltap user; to remove them: rm -r $etc $root/var/lib/calltap; deluser calltap"
  exit 0
fi

# The binary: given, or the release build of this checkout (built when missing).
if [ -z "$binary" ]; then
  binary=$src/target/release/calltap
  if [ ! -x "$binary" ]; then
    command -v cargo >/dev/null 2>&1 ||
      die "no $binary and no cargo to build it: run \`cargo build --release\` as your user first"
    say "building calltap (cargo build --release --no-default-features --bin calltap) ..."
    (cd "$src" && cargo build --release --locked --no-default-features --bin calltap)
  fi
fi
[ -x "$binary" ] || die "$binary is not an executable"
"$binary" --version >/dev/null 2>&1 || die "$binary does not run"

# The service's user: a system account with no login and no home of its own.
if [ "$real" = yes ] && ! getent passwd calltap >/dev/null; then
  if command -v adduser >/dev/null 2>&1; then
    adduser --system --group --no-create-home --home /var/lib/calltap --quiet calltap
  else
    useradd --system --user-group --no-create-home --home-dir /var/lib/calltap \
      --shell /usr/sbin/nologin calltap
  fi
  say "created the system user calltap"
fi
# Ownership only where the user exists (not when staging).
own() {
  if [ "$real" = yes ]; then chown "$@"; fi
}

install -d -m 0755 "$root/usr/bin" "$(dirname "$unit")" "$doc" "$etc"
# A fresh file beside the old one then a rename, so a running calltap keeps its
# (unlinked) binary until the restart below.
install -m 0755 "$binary" "$bin.new" && mv -f "$bin.new" "$bin"
install -m 0644 "$src/systemd/calltap.service" "$unit"
install -m 0644 "$src/docs/install.md" "$doc/install.md"
install -m 0644 "$src/config/calltap.toml" "$doc/calltap.toml.example"
say "installed $bin ($("$bin" --version)) and $unit"

# The configuration: never overwritten; readable by root and the calltap group, so keys
# an administrator puts in it stay private.
if [ -e "$etc/calltap.toml" ]; then
  say "kept the existing $etc/calltap.toml"
  [ -z "$interface" ] ||
    say "note: --interface $interface was not applied; set [capture] interfaces there yourself"
else
  tmp=$etc/.calltap.toml.new
  if [ -n "$interface" ]; then
    sed "s|^#interfaces = \\[\"eth1\"\\]\$|interfaces = [\"$interface\"]|" \
      "$src/packaging/calltap.toml" >"$tmp"
  else
    cp "$src/packaging/calltap.toml" "$tmp"
  fi
  chmod 0640 "$tmp"
  own root:calltap "$tmp"
  mv "$tmp" "$etc/calltap.toml"
  say "installed $etc/calltap.toml"
fi

# Keys: a random 256-bit key per file when absent. secret-keys holds what the importer
# sends as X-Secret-Key; link-keys signs recording links (so links survive restarts).
new_key_file() { # path, what it is for
  [ -e "$1" ] && { say "kept the existing $1"; return; }
  key=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  tmp=$1.new
  (umask 077 && printf '# %s: one key per line; lines starting with # are comments.\n%s\n' \
    "$2" "$key" >"$tmp")
  chmod 0640 "$tmp"
  own root:calltap "$tmp"
  mv "$tmp" "$1"
  say "made $1 with a new random key ($2)"
}
new_key_file "$etc/secret-keys" "API keys the importer sends as X-Secret-Key"
new_key_file "$etc/link-keys" "keys that sign recording links"

# The store; systemd's StateDirectory= makes it too, this serves a run without systemd.
install -d -m 0750 "$state"
own calltap:calltap "$state"

if ! grep -Eq '^[[:space:]]*interfaces[[:space:]]*=' "$etc/calltap.toml"; then
  configured=no
else
  configured=yes
fi

if [ "$systemd" = yes ]; then
  systemctl daemon-reload
  systemctl enable --quiet calltap.service
  if [ "$configured" = no ]; then
    say "calltap is enabled but not started: no capture interface is set."
    say "Set [capture] interfaces in $etc/calltap.toml, then: systemctl start calltap"
  elif [ "$start" = no ]; then
    say "calltap is enabled; start it with: systemctl start calltap"
  else
    # restart: starts a new install, and puts an upgrade's binary and unit in effect.
    if systemctl restart calltap.service; then
      say "calltap is running: systemctl status calltap; journalctl -u calltap"
    else
      say "calltap did not start; see: journalctl -u calltap -n 50"
      exit 1
    fi
  fi
elif [ "$real" = yes ]; then
  say "systemd is not running here (not PID 1): the service was not enabled."
  say "Run it in the foreground as the calltap user with CAP_NET_RAW, e.g.:"
  say "  setpriv --reuid=calltap --regid=calltap --init-groups --inh-caps=+net_raw \\"
  say "    --ambient-caps=+net_raw /usr/bin/calltap run --config /etc/calltap/calltap.toml"
fi
say "API key for the importer: the key line in $etc/secret-keys"
