#!/usr/bin/env bash
# netlab's one source of truth for what a Debian/Ubuntu machine needs.
# Used by the README, .ci/run (through scripts/test.sh) and the Vagrantfile.
#   sudo scripts/setup.sh          # system packages + .venv with netlab and its test tools
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "scripts/setup.sh: needs root to install packages and build namespaces: sudo scripts/setup.sh" >&2
  exit 3
fi

APT_PACKAGES=(iproute2 iptables util-linux iputils-ping tcpdump libpcap0.8 iperf3 sockperf ethtool nftables dnsutils python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || APT_PACKAGES+=(python3-venv)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test]' 2>&1 | grep -v -i -E "^WARNING|Location .* is ignored" || true
.venv/bin/netlab --help >/dev/null
echo "setup: ready (.venv/bin/netlab)"
