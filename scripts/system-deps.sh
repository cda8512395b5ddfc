#!/usr/bin/env bash
# The system programs the tests use as independent checks and real peers: mosquitto (the
# broker), ffprobe (reads what was written), openssl (checks signatures), espeak-ng
# (renders announcements), gpsd (a GNSS source the agent reads), chromium (Debian's, which
# Playwright drives against the web station; no browser is downloaded), PulseAudio run as a
# plain process with its command-line clients (the room the Pi's microphone and speaker
# backends record and play in), and the libraries PortAudio needs to reach it:
# libportaudio2 and ALSA's pulse plugin (libasound2-plugins); systemd-analyze (checks the
# shipped unit). As root, install what is missing; otherwise print the line that would and
# stop.
set -euo pipefail
declare -A package=([mosquitto]=mosquitto [ffprobe]=ffmpeg [openssl]=openssl [espeak-ng]=espeak-ng
                   [gpsd]=gpsd [chromium]=chromium [pulseaudio]=pulseaudio
                   [pacat]=pulseaudio-utils [systemd-analyze]=systemd)
missing=()
for program in mosquitto ffprobe openssl espeak-ng gpsd chromium pulseaudio pacat systemd-analyze; do
  command -v "$program" >/dev/null 2>&1 || [ -x "/usr/sbin/$program" ] || missing+=("${package[$program]}")
done
# Libraries, not programs: asked of dpkg.
for library in libportaudio2 libasound2-plugins; do
  dpkg-query -W -f='${Status}' "$library" 2>/dev/null | grep -q "ok installed" || missing+=("$library")
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
