"""Sealing and verification throughput, as a ratio to the raw limit measured in the same run.

raw:    SHA-256 over N bytes, then AES-256-GCM over the same N bytes in 1 MiB chunks (nonce
        and 48-byte AAD as the evidence format uses them); raw = N / (t_sha + t_gcm). This
        is what hashing once and encrypting once costs on this machine: the floor for any
        seal of these bytes.
seal:   the same N bytes written through ``EncryptingFile`` (a ``.bce`` file in a temporary
        directory on the same disk) and closed, then ``Sealer.seal`` (canonical manifest,
        Ed25519 signature, chain head). ``durable=False`` leaves fsync out, so the figure is
        the software's; the durable figure (fsync at close) is printed beside it and is
        bounded by the disk.
verify: ``firmware_py.evidence.verify.verify`` on that one sealed item, without the agency key
        (stored-byte hash, chunk structure, signature, chain) and with it (every chunk
        decrypted, plaintext hash compared). The file is in the page cache by then, so the
        disk is left out here too.

Target: seal and verify ≥ 0.8 × raw. Each figure is the best of ``--repeat`` runs, because
other work on the machine only ever makes a run slower. MB here is 10^6 bytes.

    .venv/bin/python bench/seal.py [--mib 256] [--repeat 3] [--write-size 1048576]
                                   [--dir DIR] [--json] [--profile]

Page faults per MiB are printed beside each figure: a fresh page mapped by the allocator
costs microseconds on a VM, so buffers allocated and freed per chunk show up there first.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import hmac
import io
import json
import os
import pstats
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from device.clock import Timestamp, TimeSource
from bodycam.heap import keep_chunk_buffers
from firmware_py.evidence.evidence_file import EncryptingFile
from firmware_py.evidence.keys import agency_key, device_identity, enroll, load_registry
from firmware_py.evidence.seal import Sealer
from firmware_py.evidence.store import EvidenceStore
from firmware_py.evidence.verify import verify

MIB = 1 << 20
TARGET = 0.8
DEVICE = "BC-BENCH"


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def best_of(repeat: int, run: Callable[[], Any]) -> tuple[float, int]:
    """Shortest wall time of ``repeat`` runs (noise only ever adds time), and the fewest
    minor page faults one run took: each is a fresh page the allocator or the page cache
    had to map, and they are where much of the time goes when buffers are not reused."""
    best, faults = float("inf"), 1 << 62
    for _ in range(repeat):
        before = minor_faults()
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
        faults = min(faults, minor_faults() - before)
    return best, faults


def raw_limit(data: memoryview, repeat: int) -> tuple[tuple[float, int], tuple[float, int]]:
    """Seconds for SHA-256 over ``data`` and for AES-256-GCM over it in 1 MiB chunks."""
    def sha() -> str:
        digest = hashlib.sha256()
        for start in range(0, len(data), MIB):
            digest.update(data[start:start + MIB])
        return digest.hexdigest()

    aead = AESGCM(AESGCM.generate_key(256))
    aad = bytes(48)  # the format's AAD length: SHA-256(header) ‖ u64 index ‖ u64 written-at

    def gcm() -> None:
        for index, start in enumerate(range(0, len(data), MIB)):
            aead.encrypt(index.to_bytes(12, "big"), data[start:start + MIB], aad)

    return best_of(repeat, sha), best_of(repeat, gcm)


def raw_v2(data: memoryview, repeat: int) -> tuple[float, int]:
    """Seconds for what format version 2 adds over hashing once: AES-256-CTR and
    HMAC-SHA256 over the ciphertext, in 1 MiB chunks (the construction the openssl
    command line can check and decrypt; it costs one more SHA-256 pass than GCM's GHASH)."""
    key = os.urandom(32)
    out = bytearray(MIB + 16)

    def ctr_hmac() -> None:
        for index, start in enumerate(range(0, len(data), MIB)):
            encryptor = Cipher(algorithms.AES(key), modes.CTR(index.to_bytes(16, "big"))).encryptor()
            size = encryptor.update_into(data[start:start + MIB], out)
            hmac.new(key, memoryview(out)[:size], hashlib.sha256).digest()

    return best_of(repeat, ctr_hmac)


@dataclass
class Bench:
    """An enrolled device and its store in a temporary directory, sealing one file per run."""

    root: Path
    write_size: int

    def __post_init__(self) -> None:
        enroll(self.root / "device", self.root / "dock", DEVICE, "bench unit")
        self.identity = device_identity(self.root / "device", DEVICE)
        self.store = EvidenceStore(self.root / "device" / "evidence", DEVICE)
        self.sealer = Sealer(self.identity, self.store)
        self.activity = self.store.open_activity(time.time())
        self.registry = load_registry(self.root / "dock")
        self.agency = agency_key(self.root / "dock")
        self.last_manifest: Path | None = None

    def seal(self, data: memoryview, durable: bool) -> Path:
        """Write ``data`` as one encrypted segment and seal it; returns the manifest path."""
        sequence = self.store.next_sequence()
        started = Timestamp(time.time(), 0, time.monotonic(), TimeSource.RTC)
        path = self.store.evidence_path(self.activity, sequence, started.utc, ".ts.bce")
        media = EncryptingFile(path, self.identity.agency_public,
                               {"device": DEVICE, "name": path.name, "role": "media"},
                               durable=durable)
        for start in range(0, len(data), self.write_size):
            media.write(data[start:start + self.write_size])
        stored = media.close()
        ended = Timestamp(time.time(), 0, time.monotonic(), TimeSource.RTC)
        stem = path.with_name(path.name[: -len(".ts.bce")])
        seal = self.sealer.seal("segment", stem, [("media", stored)],
                                {"activity": self.activity.id, "file_number": sequence},
                                start=started, end=ended)
        self.last_manifest = seal.manifest_path
        return seal.manifest_path

    def verify(self, manifest: Path, with_key: bool) -> None:
        report = verify([manifest], self.registry, self.agency if with_key else None)
        if not report.ok:  # a benchmark of a verifier that rejects good evidence means nothing
            raise SystemExit(f"bench: verification failed: {report.to_json()}")


def profile(run: Callable[[], Any], top: int) -> str:
    """The functions where ``run`` spends its own time (cProfile, by tottime)."""
    profiler = cProfile.Profile()
    profiler.runcall(run)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def rate(n: int, seconds: float) -> float:
    return n / seconds / 1e6 if seconds > 0 else float("inf")


def run(mib: int, repeat: int, write_size: int, with_profile: bool,
        where: Path | None = None) -> dict[str, Any]:
    n = mib * MIB
    # Random bytes: compressed video is incompressible, and nothing here may shortcut zeros.
    data = memoryview(os.urandom(n))
    (t_sha, f_sha), (t_gcm, f_gcm) = raw_limit(data, repeat)
    t_v2, _ = raw_v2(data, repeat)
    raw = rate(n, t_sha + t_gcm)
    raw_construction = rate(n, t_sha + t_v2)
    rows: dict[str, Any] = {
        "benchmark": "seal and verify", "bytes": n, "repeat": repeat, "write_size": write_size,
        "target_ratio": TARGET,
        "raw": {"sha256_mb_s": round(rate(n, t_sha), 1), "aes_gcm_mb_s": round(rate(n, t_gcm), 1),
                "mb_s": round(raw, 1), "page_faults_per_mib": round((f_sha + f_gcm) / mib, 1),
                "aes_ctr_hmac_mb_s": round(rate(n, t_v2), 1),
                "v2_mb_s": round(raw_construction, 1)},
    }
    with tempfile.TemporaryDirectory(prefix="bench-seal-", dir=where) as tmp:
        bench = Bench(Path(tmp), write_size)
        timings = {
            "seal": best_of(repeat, lambda: bench.seal(data, durable=False)),
            "seal_durable": best_of(repeat, lambda: bench.seal(data, durable=True)),
        }
        manifest = bench.last_manifest
        assert manifest is not None
        timings["verify_no_key"] = best_of(repeat, lambda: bench.verify(manifest, False))
        timings["verify_with_key"] = best_of(repeat, lambda: bench.verify(manifest, True))
        for name, (seconds, faults) in timings.items():
            mb_s = rate(n, seconds)
            rows[name] = {"seconds": round(seconds, 4), "mb_s": round(mb_s, 1),
                          "ratio_to_raw": round(mb_s / raw, 3),
                          "ratio_to_v2_raw": round(mb_s / raw_construction, 3),
                          "page_faults_per_mib": round(faults / mib, 1)}
        if with_profile:
            rows["profiles"] = {
                "seal": profile(lambda: bench.seal(data, durable=False), 15),
                "verify_with_key": profile(lambda: bench.verify(manifest, True), 15),
            }
    return rows


def main(argv: list[str] | None = None) -> int:
    keep_chunk_buffers()  # the heap every bodycam process has (bodycam/heap.py), raw too
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="bytes to seal, in MiB (default 256)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best counts")
    parser.add_argument("--write-size", type=int, default=MIB,
                        help="bytes per EncryptingFile.write call (default 1 MiB)")
    parser.add_argument("--profile", action="store_true",
                        help="also print where seal and keyed verify spend their time")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the sealed files go (default: the system temp directory)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.mib < 1 or args.repeat < 1 or args.write_size < 1:
        parser.error("--mib, --repeat and --write-size must be positive")
    rows = run(args.mib, args.repeat, args.write_size, args.profile, args.dir)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    raw = rows["raw"]
    print(f"seal and verify, {args.mib} MiB, best of {args.repeat} (MB = 10^6 bytes)")
    print(f"  raw limit: SHA-256 {raw['sha256_mb_s']:.0f} MB/s + AES-256-GCM "
          f"{raw['aes_gcm_mb_s']:.0f} MB/s in 1 MiB chunks = {raw['mb_s']:.0f} MB/s "
          f"({raw['page_faults_per_mib']:g} page faults/MiB)")
    print(f"  format v2's own floor: SHA-256 + AES-256-CTR and HMAC-SHA256 "
          f"{raw['aes_ctr_hmac_mb_s']:.0f} MB/s = {raw['v2_mb_s']:.0f} MB/s (each figure below "
          f"also as a ratio to it)")
    labels = {"seal": "seal (no fsync)", "seal_durable": "seal (fsync at close)",
              "verify_no_key": "verify, no key", "verify_with_key": "verify, agency key"}
    below = []
    for key, label in labels.items():
        row = rows[key]
        gated = key != "seal_durable"  # the disk, not the software, bounds the durable figure
        if not gated:
            verdict = "disk-bound, no target"
        elif row["ratio_to_raw"] >= TARGET:
            verdict = f"target >= {TARGET}x: ok"
        else:
            verdict = f"target >= {TARGET}x: BELOW"
            below.append(label)
        print(f"  {label:<22} {row['mb_s']:>6.0f} MB/s  {row['ratio_to_raw']:.2f}x raw  "
              f"{row['ratio_to_v2_raw']:.2f}x v2 floor  "
              f"{row['page_faults_per_mib']:>5g} faults/MiB  ({verdict})")
    if below and not args.profile:
        print(f"  below target: {', '.join(below)}; --profile shows where the time goes")
    for name, text in rows.get("profiles", {}).items():
        print(f"\n--- profile: {name} ---\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
