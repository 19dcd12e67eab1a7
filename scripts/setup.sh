#!/usr/bin/env bash
# Installs, idempotently, every system package the tests need on a fresh Debian 12 machine (as root).
# Safe to run again: it only calls apt-get when something is missing.
set -euo pipefail

packages=(
  bubblewrap      # the peer in bench/ and a reference in tests
  nftables        # transparent egress redirection inside the job's network namespace
  iproute2        # test-made network namespaces
  curl            # egress tests run curl inside the sandbox
  openssl         # egress tests: s_client ignores proxy variables
  lynis           # the host-check benchmark's peer
  util-linux      # setpriv: host-check tests run the binary as an unprivileged user
  time            # GNU time: peak RSS in bench/hostcheck.sh
  chromium        # the HTML job report is checked in headless Chromium
  make gcc        # benign real builds in the detection tests
  procps          # ps/pgrep in tests
  python3         # probes inside the sandbox
  git             # --protect-source reads git's index
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
