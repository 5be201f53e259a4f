#!/usr/bin/env bash
# Installs the programs the tests start as real processes: the Debian clickhouse-server (the
# native-protocol path) and nats-server (split mode). As root it installs them with apt;
# otherwise it says what to install.
set -euo pipefail
missing=()
command -v clickhouse-server >/dev/null || missing+=(clickhouse-server clickhouse-client)
command -v nats-server >/dev/null || missing+=(nats-server)
command -v npm >/dev/null || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
  # The package may try to start a server through init scripts; the tests start their own.
  exit 0
fi
echo "the tests need: ${missing[*]}" >&2
echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
exit 1
