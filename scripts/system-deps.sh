#!/usr/bin/env bash
# The system programs the tests use as independent checks and real peers: mosquitto (the
# broker), ffprobe (reads what was written), openssl (checks signatures), espeak-ng
# (renders announcements), gpsd (a GNSS source the agent reads), chromium (Debian's, which
# Playwright drives against the web station; no browser is downloaded). As root, install what is
# missing; otherwise print the line that would and stop.
set -euo pipefail
declare -A package=([mosquitto]=mosquitto [ffprobe]=ffmpeg [openssl]=openssl [espeak-ng]=espeak-ng
                   [gpsd]=gpsd [chromium]=chromium)
missing=()
for program in mosquitto ffprobe openssl espeak-ng gpsd chromium; do
  command -v "$program" >/dev/null 2>&1 || [ -x "/usr/sbin/$program" ] || missing+=("${package[$program]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
line="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  echo "installing system programs the tests need: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "missing system programs for the tests; install them with:" >&2
  echo "  sudo sh -c '$line'" >&2
  exit 1
fi
