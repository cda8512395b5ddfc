#!/usr/bin/env bash
# Builds, once, the Debian 13 (trixie) chroot the picamera2 tests run in: libcamera 0.7
# from trixie-backports (its software "virtual" camera; Debian 12's libcamera 0.0.3 has
# none) with its Python bindings, and a venv with system site packages holding picamera2
# and bodycam's own dependencies from PyPI. About 90 s of debootstrap plus the packages;
# `make test` runs it, and later runs find it ready (the stamp file) and do nothing.
#
# The cache lives outside the checkout: BODYCAM_CAMERA_CHROOT, by default
# /var/cache/bodycam/trixie-camera. As root it builds; otherwise it says what would.
set -euo pipefail
CHROOT=${BODYCAM_CAMERA_CHROOT:-/var/cache/bodycam/trixie-camera}
MIRROR=${BODYCAM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
VERSION=3  # bump when what goes into the chroot changes: it is then built again
STAMP="$CHROOT/.bodycam-ready-v$VERSION"

# What the tests' harness needs in a built chroot, checked at every run (cheap): the
# mount points for the checkout and a test's output, and the virtual camera's
# configuration in libcamera's data directory (two sizes: the video and the photo stream).
configure() {
  mkdir -p "$CHROOT/bodycam" "$CHROOT/out"
  local dir="$CHROOT/usr/share/libcamera/pipeline/virtual"
  mkdir -p "$dir"
  cat > "$dir/virtual.yaml.new" <<'YAML'
%YAML 1.1
---
"Virtual0":
  supported_formats:
  - width: 1280
    height: 720
    frame_rates:
    - 30
  - width: 640
    height: 360
    frame_rates:
    - 30
  test_pattern: "bars"
  location: "CameraLocationBack"
  model: "bodycam test virtual camera"
YAML
  mv "$dir/virtual.yaml.new" "$dir/virtual.yaml"
}
if [ -f "$STAMP" ]; then
  [ "$(id -u)" -eq 0 ] && configure
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "the picamera2 tests need a Debian 13 chroot at $CHROOT; build it as root with:" >&2
  echo "  sudo $0" >&2
  exit 1
fi
command -v debootstrap >/dev/null || {
  echo "installing debootstrap"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }

echo "building the virtual-camera chroot in $CHROOT (once; a few minutes)"
mkdir -p "$(dirname "$CHROOT")"
if [ ! -f "$CHROOT.partial/.debootstrap-done" ]; then  # a build cut short keeps its base
  rm -rf "$CHROOT.partial"
  debootstrap --variant=minbase trixie "$CHROOT.partial" "$MIRROR" >/dev/null
  touch "$CHROOT.partial/.debootstrap-done"
fi
cat > "$CHROOT.partial/etc/apt/sources.list" <<EOF
deb $MIRROR trixie main
deb $MIRROR trixie-backports main
EOF
in_chroot() { chroot "$CHROOT.partial" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  DEBIAN_FRONTEND=noninteractive HOME=/root "$@"; }
mount -t proc proc "$CHROOT.partial/proc"
trap 'umount "$CHROOT.partial/proc" 2>/dev/null || true' EXIT
in_chroot apt-get update -qq
# libcamera from backports, everything else from trixie: picamera2's own dependencies
# where Debian has them, and a compiler for PiDNG's extension. (ffprobe, the independent
# check of what was recorded, runs outside, on the host's ffmpeg.)
in_chroot apt-get install -y -qq --no-install-recommends \
  python3-libcamera/trixie-backports libcamera-ipa/trixie-backports \
  python3 python3-venv python3-pip python3-numpy python3-pil python3-prctl python3-piexif \
  python3-jsonschema python3-tqdm python3-libarchive-c python3-dev gcc libc6-dev \
  ca-certificates >/dev/null
in_chroot python3 -m venv --system-site-packages /opt/venv
# pip in the chroot trusts what the host trusts (a proxy's CA the host was given included).
cp /etc/ssl/certs/ca-certificates.crt "$CHROOT.partial/etc/ssl/host-ca-certificates.crt"
printf '[global]\ncert = /etc/ssl/host-ca-certificates.crt\n' > "$CHROOT.partial/etc/pip.conf"
# picamera2 itself (pure Python) and what Debian lacks; bodycam's dependencies beside it.
in_chroot /opt/venv/bin/pip install -q --no-deps picamera2 videodev2 pidng simplejpeg
in_chroot /opt/venv/bin/pip install -q "av>=12" "cryptography>=42" "gpiozero>=2.0" \
  "pyserial>=3.5" "pynmea2>=1.19" "gpsdclient>=1.3" "paho-mqtt>=2.0"
umount "$CHROOT.partial/proc"
trap - EXIT
# (picamera2 itself imports only with the harness's stand-in for kms++: tests/virtual_camera.py)
in_chroot /opt/venv/bin/python -c "import libcamera, importlib.metadata as m; print('libcamera bindings, picamera2', m.version('picamera2'))"
rm -rf "$CHROOT"
mv "$CHROOT.partial" "$CHROOT"
configure
touch "$STAMP"
echo "virtual-camera chroot ready: $CHROOT"
