#!/usr/bin/env bash
# netlab's one source of truth for what a Debian/Ubuntu machine needs.
# Used by the README, .ci/run (through scripts/test.sh) and the Vagrantfile.
#   sudo scripts/setup.sh               # system packages + .venv with netlab and its test tools
#   sudo scripts/setup.sh --vm          # ... and the VM tier / `netlab vm`: QEMU, a stock kernel, virtme-ng
#   sudo scripts/setup.sh --vm-if-needed  # ... the VM tools only if this kernel lacks ipip, netem or IPVS
#   sudo scripts/setup.sh --modules     # ... and load ipip, ip_vs, sch_netem, vxlan now and at every boot
#                                       #     (CI runners, the Vagrant VM: never on a machine you share)
#   sudo scripts/setup.sh --vagrant     # ... and vagrant, where apt has it (tests validate the Vagrantfile)
set -euo pipefail
cd "$(dirname "$0")/.."

VM=no
MODULES=no
VAGRANT=no
for arg in "$@"; do
  case "$arg" in
    --vm) VM=yes ;;
    --vm-if-needed) VM=if-needed ;;
    --modules) MODULES=yes ;;
    --vagrant) VAGRANT=yes ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "scripts/setup.sh: unknown option $arg (see scripts/setup.sh --help)" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  echo "scripts/setup.sh: needs root to install packages and build namespaces: sudo scripts/setup.sh $*" >&2
  exit 3
fi

apt_install() {  # install the packages of "$@" that are not installed yet
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # no service of a package installed here starts (Debian's nginx would listen on the host's
    # port 80): netlab runs its own nginx inside a lab's namespaces; policy-rc.d is Debian's switch
    local guard=no
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\n# netlab setup: no service starts while it installs packages\nexit 101\n' >/usr/sbin/policy-rc.d
      chmod 755 /usr/sbin/policy-rc.d
      guard=yes
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || { [ "$guard" = yes ] && rm -f /usr/sbin/policy-rc.d; exit 1; }
    if [ "$guard" = yes ]; then rm -f /usr/sbin/policy-rc.d; fi
  fi
}

# nginx: the ingress-nginx controller's data plane (netlab starts its own master per controller pod,
# from its own configuration and state directory; apt_install keeps the package's own service from starting);
# openssl: the controller's default certificate and scripts/tls-secret.sh;
# bird2: BIRD 2, the BGP daemon of cni calico (netlab runs one per node from its own configuration
# and control socket under the lab's state directory; apt_install keeps the package's own service from starting)
# graphviz: Graphviz's dot, which lays out `netlab graph` and `trace --graph` pictures
APT_PACKAGES=(iproute2 iptables util-linux iputils-ping tcpdump libpcap0.8 iperf3 sockperf ethtool nftables dnsutils curl ipvsadm ipset python3 kmod time nginx openssl bird2 graphviz)
python3 -c 'import ensurepip, venv' 2>/dev/null || APT_PACKAGES+=(python3-venv)
apt_install "${APT_PACKAGES[@]}"

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
pip_install() {  # quiet unless it fails
  local log
  log=$(mktemp)
  if ! .venv/bin/python -m pip install -q "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "setup: pip install $* failed" >&2
    exit 1
  fi
  rm -f "$log"
}
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
pip_install -e '.[test]'
.venv/bin/netlab --help >/dev/null

# Kernel modules the datapaths need (ipip: Calico; ip_vs: kube-proxy IPVS; sch_netem: impairments).
KERNEL_MODULES=(ipip ip_vs ip_vs_rr sch_netem vxlan)
if [ "$MODULES" = yes ]; then
  if ! modprobe -n -a ipip sch_netem 2>/dev/null && [ -r /etc/os-release ] && grep -q '^ID=ubuntu' /etc/os-release; then
    apt_install "linux-modules-extra-$(uname -r)"  # Ubuntu's cloud kernels keep these in -extra
  fi
  printf '%s\n' "# netlab (scripts/setup.sh --modules)" "${KERNEL_MODULES[@]}" > /etc/modules-load.d/netlab.conf
  for mod in "${KERNEL_MODULES[@]}"; do
    modprobe "$mod" || echo "setup: this kernel has no module $mod: \`netlab doctor\` says what that disables" >&2
  done
  echo "setup: kernel modules loaded, and at every boot (/etc/modules-load.d/netlab.conf)"
fi

# The VM tier (netlab/testing/vmtier.py) and `netlab vm`: boot the distro's stock kernel in QEMU.
if [ "$VM" = if-needed ]; then
  lacking=$(.venv/bin/python -m netlab.vm --lacking)
  if [ -n "$lacking" ]; then
    echo "setup: this kernel lacks $lacking: setting up the VM tier"
    VM=yes
  fi
fi
if [ "$VM" = yes ]; then
  if [ "$(uname -m)" != x86_64 ]; then
    echo "setup: the VM tier boots x86_64 kernels only (this machine is $(uname -m))" >&2
    exit 3
  fi
  KERNEL_PACKAGE=linux-image-amd64  # Debian's stock kernel
  if [ -r /etc/os-release ] && grep -q '^ID=ubuntu' /etc/os-release; then
    KERNEL_PACKAGE=linux-image-generic
  fi
  # busybox-static: virtme-ng builds its initramfs from it; file: virtme-ng checks that with it
  apt_install qemu-system-x86 "$KERNEL_PACKAGE" busybox-static file
  [ -x .venv/bin/vng ] || pip_install -e '.[test,vm]'
  .venv/bin/python -c 'from netlab import vm; print("setup: VM tier ready:", vm.find_vm().describe())'
fi
if [ "$VAGRANT" = yes ]; then
  apt-cache show vagrant >/dev/null 2>&1 || apt-get update -qq || true
  if apt-cache show vagrant >/dev/null 2>&1; then
    apt_install vagrant vagrant-libvirt  # vagrant-libvirt: `vagrant validate` checks a provider's settings too
  else
    echo "setup: apt has no vagrant package here: the Vagrantfile is checked without it"
  fi
fi
echo "setup: ready (.venv/bin/netlab)"
