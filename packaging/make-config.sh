#!/bin/sh
# Prints the configuration the package installs as /etc/calltap/calltap.toml: the
# commented example config/calltap.toml with the service's paths set. The committed
# packaging/calltap.toml is this script's output (tests/deploy.rs checks they agree):
#   sh packaging/make-config.sh > packaging/calltap.toml
set -eu
cd "$(dirname "$0")/.."
store='path = "/var/lib/calltap"'
keys='secret_keys_file = "/etc/calltap/secret-keys"'
links='link_keys_file = "/etc/calltap/link-keys"'
# The service's store is its StateDirectory. API and link-signing keys live in files
# readable by root and the calltap group only (made at install), not in this file; a
# link key from a file keeps recording links valid across restarts.
body=$(sed -e "s|^#path = \"./calltap-data\"\$|$store|" \
           -e "s|^#$keys\$|$keys|" \
           -e "s|^#$links\$|$links|" config/calltap.toml)
for line in "$store" "$keys" "$links"; do
  printf '%s\n' "$body" | grep -qxF "$line" || {
    echo "make-config.sh: config/calltap.toml no longer has the line that becomes: $line" >&2
    exit 1
  }
done
printf '%s\n' \
  '# Installed by calltap (docs/install.md). The service runs' \
  '# `calltap run --config /etc/calltap/calltap.toml`; after editing, check this file with' \
  '# `calltap check-config --config /etc/calltap/calltap.toml`, then' \
  '# `systemctl reload calltap` (operators, properties) or `systemctl restart calltap`.' \
  '' \
  "$body"
