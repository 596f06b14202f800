#!/usr/bin/env bash
# Installs the Debian packages otakey needs to build and test, if missing.
# Usage: scripts/deps.sh [extra-package...]
set -euo pipefail
pkgs=(build-essential cmake pkg-config libmbedtls-dev libssl-dev libsqlite3-dev libmosquitto-dev mosquitto-dev libcjson-dev libinih-dev mosquitto mosquitto-clients openssl bc sqlite3 libpq-dev postgresql libmicrohttpd-dev libcurl4-openssl-dev "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "otakey: installing ${missing[*]}" >&2
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
