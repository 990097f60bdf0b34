#!/usr/bin/env bash
# Install the real DICOM peers the test suite runs against (Debian/Ubuntu):
#   dcmtk    storescu, storescp, echoscu, movescu, dcmqrscp (3.6.7 on bookworm)
#   orthanc  Orthanc (1.10.1 on bookworm)
#
#   scripts/install-peers.sh [EXTRA_APT_PACKAGE ...]
#
# Idempotent: apt-get runs only when a package is missing (one `apt-get update` first).
# Runs as root, or through sudo. The packaged Orthanc service is never left running: a
# temporary /usr/sbin/policy-rc.d that exits 101 blocks service start-up during the install
# (it would hold ports 4242/8042), and if a service manager started it anyway it is stopped.
# The tests start their own private Orthanc and DCMTK servers on free loopback ports.
set -euo pipefail

pkgs=(dcmtk orthanc "$@")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-peers: already installed: ${pkgs[*]}"
  exit 0
fi

if [[ $(id -u) != 0 ]]; then
  if command -v sudo >/dev/null; then
    exec sudo -- "$0" "$@"
  fi
  echo "install-peers: missing ${missing[*]}; run this script as root" >&2
  exit 1
fi

policy=/usr/sbin/policy-rc.d
backup=""
restore_policy() {
  rm -f "$policy"
  if [[ -n $backup ]]; then mv -f "$backup" "$policy"; fi
}
if [[ -e $policy || -L $policy ]]; then
  backup="$policy.install-peers.$$"
  mv -f "$policy" "$backup"
fi
trap restore_policy EXIT
printf '#!/bin/sh\n# install-peers.sh: do not start services while installing\nexit 101\n' >"$policy"
chmod 755 "$policy"

export DEBIAN_FRONTEND=noninteractive
apt-get update -q </dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null

restore_policy
trap - EXIT

# If a service manager started the packaged Orthanc anyway, stop and disable it.
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
  if systemctl is-active --quiet orthanc 2>/dev/null; then
    systemctl stop orthanc || true
  fi
  systemctl disable orthanc >/dev/null 2>&1 || true
elif [[ -x /etc/init.d/orthanc ]]; then
  if /etc/init.d/orthanc status >/dev/null 2>&1; then
    /etc/init.d/orthanc stop || true
  fi
fi

echo "install-peers: $(/usr/bin/storescu --version 2>/dev/null | head -1 || echo 'dcmtk ?')"
echo "install-peers: orthanc $(dpkg-query -W -f='${Version}' orthanc 2>/dev/null || echo '?')"
