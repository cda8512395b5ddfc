"""How fast the station turns an archived segment into what the browser plays: decryption
in memory (the raw limit: AES-GCM over the same chunks) and the remux from MPEG-TS into
fragmented MP4 (PyAV, no re-encoding), per segment of a dock's archive.

    .venv/bin/python bench/station_playback.py --dock demo-out/patrol/dock \\
        --archive demo-out/patrol/archive
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from firmware_py.evidence.keys import load_agency_private  # noqa: E402
from station.media import decrypt, mp4_stream  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dock", type=Path, required=True)
    parser.add_argument("--archive", type=Path, required=True)
    args = parser.parse_args()
    key = load_agency_private(args.dock)
    segments = sorted(args.archive.rglob("*.ts.bce"))
    if not segments:
        print(f"no segments under {args.archive}", file=sys.stderr)
        return 2
    total_mb = total_decrypt = total_remux = 0.0
    for path in segments:
        start = time.perf_counter()
        plain = decrypt(path, key)
        decrypted = time.perf_counter()
        mp4 = b"".join(mp4_stream(plain, path.name))
        remuxed = time.perf_counter()
        total_mb += len(plain) / 1e6
        total_decrypt += decrypted - start
        total_remux += remuxed - decrypted
        print(f"{path.name}: {len(plain) / 1e6:.1f} MB, decrypt {decrypted - start:.3f} s, "
              f"remux {remuxed - decrypted:.3f} s, MP4 {len(mp4) / 1e6:.1f} MB")
    print(f"{len(segments)} segments, {total_mb:.1f} MB: decrypt {total_mb / total_decrypt:.0f} "
          f"MB/s, remux {total_mb / total_remux:.0f} MB/s, both "
          f"{total_mb / (total_decrypt + total_remux):.0f} MB/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
