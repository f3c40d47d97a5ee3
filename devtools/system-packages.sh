#!/usr/bin/env bash
# What `make test` needs from the machine beyond Python: Debian's PostgreSQL server programs (the
# production-instance tests run initdb and pg_ctl in a temp folder), Node.js with npm (Azurite, the Azure
# Storage emulator the object-store tests start) and Chromium (the UI test drives it through Playwright; no
# browser is downloaded). Installs whichever is missing with apt-get, as root or through sudo; does nothing
# when all are there.
set -euo pipefail
missing=()
if ! command -v pg_ctl >/dev/null && ! compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; then
  missing+=(postgresql)
fi
if ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi
if [ ! -x /usr/bin/chromium ]; then
  missing+=(chromium)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null; then
    echo "make test needs ${missing[*]}: install them (apt-get install ${missing[*]}) and run it again" >&2
    exit 1
  fi
  sudo="sudo"
fi
echo "Installing ${missing[*]} (apt-get) ..."
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
