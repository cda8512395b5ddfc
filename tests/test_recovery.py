"""Power cut while recording (Art. 12, R18.1): the open segment is sealed at the next start.

The first run is abandoned mid-recording — nothing closed, as when the battery is pulled —
with a torn half-chunk at the end of the media file. The next start finds the unsealed
files, seals the complete chunks as cut short, logs it, and the chain runs on: the whole
device verifies, and the recovered segment decodes to within a second of the cut.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta

import av
import pytest

from firmware_py.evidence import audit
from firmware_py.evidence.evidence_file import CHUNK_HEAD
from firmware_py.evidence.seal import unsealed
from simulator.harness import scenario as sc
from bodycam.simulation import simulation

FAST = {"video": {"width": 320, "height": 180, "fps": 15},
        "recording": {"segment_seconds": 60, "pre_event_seconds": 2}}
START = datetime.fromisoformat("2026-11-29T09:00:00+08:00")


def scenario(start, events, duration="60s"):
    return sc.parse({"scenario": {"name": "cut", "duration": duration, "start": start.isoformat()},
                     "config": FAST, "event": events}, "cut.toml")


@pytest.mark.req("R18.1")
def test_power_cut_segment_is_recovered_and_the_chain_continues(tmp_path):
    first = simulation(scenario(START, [{"at": 5, "action": "press", "button": "record"}]), tmp_path)
    first.start()
    first.advance_to(31.3)
    cut_utc = first.world.hardware.clock.now().utc
    first.world.close()  # power gone: no segment closed, no manifest written
    first.audit.close()
    evidence = tmp_path / "device" / "evidence"
    open_stems = unsealed(evidence)
    assert len(open_stems) == 1  # the live segment; the pre-event part was sealed at the press
    media = open_stems[0].with_name(open_stems[0].name + ".ts.bce")
    with open(media, "ab") as fh:  # the write the cut interrupted: a chunk head, half a body
        fh.write(CHUNK_HEAD.pack(4000, 0, 0) + b"\x5a" * 1500)

    later = START + timedelta(seconds=40)
    second = simulation(scenario(later, [{"at": 5, "action": "press", "button": "record"},
                                         {"at": 15, "action": "press", "button": "record"}],
                                 duration="20s"), tmp_path)
    second.run()

    entries = audit.read(tmp_path / "device" / "audit.jsonl")  # one chain across both runs
    recovered = [e["fields"] for e in entries if e["kind"] == "segment_recovered"]
    assert len(recovered) == 1 and recovered[0]["discarded_bytes"] == CHUNK_HEAD.size + 1500
    assert abs(recovered[0]["last_good_chunk_utc_ms"] / 1000 - cut_utc) <= 1.0
    assert (media.with_name(media.name + ".torn")).stat().st_size == CHUNK_HEAD.size + 1500

    proc = subprocess.run([sys.executable, "-m", "bodycam", "verify", str(evidence),
                           "--trust", str(tmp_path / "dock"), "--key", str(tmp_path / "dock"),
                           "--json"], capture_output=True, text=True)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stdout
    cut = [i for i in report["items"] if i["cut_short"]]
    assert len(cut) == 1 and cut[0]["sequence"] == 2  # next in the chain, before the new run's
    assert [i["sequence"] for i in report["items"]] == list(range(1, len(report["items"]) + 1))

    out = tmp_path / "export"
    proc = subprocess.run([sys.executable, "-m", "bodycam", "export", str(evidence),
                           "--trust", str(tmp_path / "dock"), "--key", str(tmp_path / "dock"),
                           "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    plain = out / media.parent.name / media.name[:-len(".bce")]
    with av.open(str(plain)) as container:
        stream = container.streams.video[0]
        times = [float(f.pts * stream.time_base) for f in container.decode(stream)]
    # File PTS = 0.7 s + time since the recording's first frame (the metadata says when).
    header = json.loads(plain.with_name(plain.name.replace(".ts", ".meta.jsonl")).read_text().splitlines()[0])
    last_frame = header["recording_origin_us"] / 1e6 + times[-1] - 0.7
    assert 31.3 - 1.0 <= last_frame <= 31.3  # at most a second lost to the cut


@pytest.mark.req("R18.1")
def test_cut_during_sealing_and_before_the_first_chunk(tmp_path):
    """The two cuts that could leave a seal half made or a file with nothing in it."""
    from firmware_py.evidence.evidence_file import StoredFile
    from firmware_py.evidence.keys import device_identity, enroll
    from firmware_py.evidence.seal import Sealer, finish_interrupted, recover, unsealed
    from firmware_py.evidence.store import EvidenceStore

    enroll(tmp_path / "device", tmp_path / "dock", "BC-0001", "unit")
    store = EvidenceStore(tmp_path / "device" / "evidence", "BC-0001")
    sealer = Sealer(device_identity(tmp_path / "device"), store)
    activity = store.open_activity(1_795_000_000.0)
    # A file cut before its header reached the disk: nothing to keep, but the number is
    # explained by a sealed, empty, cut-short manifest.
    empty = store.evidence_path(activity, store.next_sequence(), 1_795_000_000.0, ".ts.bce")
    empty.write_bytes(b"BCE")
    (stem,) = unsealed(store.root)
    seal = recover(sealer, stem, {"activity": activity.id})
    assert seal.manifest["files"] == [] and seal.manifest["cut_short"]["empty"]
    assert not empty.exists() and empty.with_name(empty.name + ".torn").read_bytes() == b"BCE"
    # A cut after the chain advanced but before the seal was published: finished at start.
    doc = activity.path / "activity.json"
    doc.write_text("{}")
    real_publish = __import__("firmware_py.evidence.seal", fromlist=["_publish"])._publish

    def cut(*_):
        raise OSError("power cut")

    import firmware_py.evidence.seal as seal_module
    seal_module._publish = cut
    try:
        with pytest.raises(OSError):
            sealer.seal("activity", activity.path / "activity",
                        [("record", StoredFile(doc, "x", 2, "x", 2, 0, True, None))], {})
    finally:
        seal_module._publish = real_publish
    assert not (activity.path / "activity.manifest.json").exists()
    finished = finish_interrupted(store.root, store.chain_head()[1])
    assert [p.name for p in finished] == ["activity.manifest.json"]
    assert (activity.path / "activity.manifest.sig").exists()
    assert store.chain_head()[0] == 2 and not unsealed(store.root)
