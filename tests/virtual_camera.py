"""Test harness: picamera2 on libcamera's software *virtual* camera, inside the Debian 13
chroot that ``scripts/virtual-camera.sh`` builds once (Debian 12's libcamera has no
virtual camera). ``run_in_chroot`` runs a Python file of this checkout there (in a mount
namespace of its own: the checkout on ``/bodycam``, an output directory on ``/out``); the
recorder's code runs unchanged, on stock picamera2.

The quirks that the virtual camera on this kernel needs live here, and only here, named
as such (``VirtualPicamera2``, ``FrameCountedEncoder``, ``MemfdAllocator``):

- **pykms**: picamera2 imports kms++'s bindings for its DRM preview; Debian has no kms++,
  and no preview is shown, so an empty stand-in module is imported in its place.
- **DMA heaps**: picamera2 and libcamera allocate frame buffers from ``/dev/dma_heap``,
  which this kernel has not; ``MemfdAllocator`` gives picamera2 memfd-backed buffers
  instead (mmap-able like a dma-buf, which is all the virtual camera does with them).
- **Pacing**: the virtual camera fills buffers as fast as it is given them; a real sensor
  delivers one per frame interval. ``VirtualPicamera2`` paces frames to the frame rate in
  ``pre_callback``, before the recorder's own pre-callback (the stamp) runs.
- **Timestamps**: the virtual camera stamps a frame when it fills the buffer, in bursts;
  ``FrameCountedEncoder`` times frames by their count from the first (what a sensor's
  timestamps are), and ``SensorTimestamp`` keeps its bursts for the stamp's clock text.
- **Stalls**: ``VirtualPicamera2.stall_s`` holds the next frame that long, as a wedged
  sensor or a loose ribbon would, for the backend's restart to be seen.
- **Raw stream**: the virtual camera refuses the raw role; ``VirtualPicamera2`` asks for
  none (picamera2 would also skip it for a camera without a colour filter array).
"""

from __future__ import annotations

import mmap
import os
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

CHROOT = Path(os.environ.get("BODYCAM_CAMERA_CHROOT", "/var/cache/bodycam/trixie-camera"))
READY = 3  # the build of scripts/virtual-camera.sh this harness needs (its VERSION)
CHECKOUT = Path(__file__).resolve().parent.parent


def chroot_ready() -> Path:
    """The chroot, built; fails (never skips) when it is not: ``make test`` builds it."""
    stamp = CHROOT / f".bodycam-ready-v{READY}"
    assert stamp.exists(), (f"the virtual-camera chroot is not built at {CHROOT}: run "
                            "scripts/virtual-camera.sh as root (make test does)")
    assert (CHROOT / "usr/share/libcamera/pipeline/virtual/virtual.yaml").exists(), \
        "the chroot lacks the virtual camera's configuration: run scripts/virtual-camera.sh"
    for program in ("unshare", "chroot", "mount"):
        assert shutil.which(program), f"{program} is missing (util-linux, coreutils)"
    return CHROOT


def run_in_chroot(script: str, out: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``script`` (a path in this checkout) with the chroot's Python; ``out`` is
    ``/out`` there. The mounts live in a private namespace and go with it."""
    root = chroot_ready()
    out.mkdir(parents=True, exist_ok=True)
    inner = (f"mount --bind {CHECKOUT} {root}/bodycam && mount --bind {out} {root}/out && "
             f"mount -t proc proc {root}/proc && mount -t tmpfs tmpfs {root}/tmp && "
             f"mount --bind /dev/pts {root}/dev/pts && "
             f"exec chroot {root} /usr/bin/env -i PATH=/usr/bin:/bin HOME=/tmp "
             f"PYTHONPATH=/bodycam PYTHONDONTWRITEBYTECODE=1 LIBCAMERA_LOG_LEVELS=*:ERROR "
             f"/opt/venv/bin/python /bodycam/{script} " + " ".join(args))
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", inner],
                          capture_output=True, text=True, timeout=timeout)


# --- inside the chroot --------------------------------------------------------------------

def install_quirks() -> None:
    """The stand-in for kms++'s bindings, before picamera2 is imported."""
    if "pykms" not in sys.modules:
        pykms = types.ModuleType("pykms")
        # The DRM preview's class body names pixel formats; no preview is ever shown.
        pykms.PixelFormat = types.SimpleNamespace(
            RGB888="RGB888", BGR888="BGR888", XRGB8888="XRGB8888", XBGR8888="XBGR8888",
            YUV420="YUV420", YVU420="YVU420", NV12="NV12", NV21="NV21", YUYV="YUYV",
            YVYU="YVYU", UYVY="UYVY", VYUY="VYUY", ARGB8888="ARGB8888", ABGR8888="ABGR8888")
        sys.modules["pykms"] = pykms


def quirk_classes(fps: int):
    """``(VirtualPicamera2, FrameCountedEncoder)`` for a camera at ``fps``."""
    install_quirks()
    import libcamera
    from picamera2 import Picamera2
    from picamera2.allocators import Allocator
    from picamera2.allocators.allocator import Sync
    from picamera2.encoders import LibavH264Encoder

    class MemfdAllocator(Allocator):
        """Frame buffers in memfds: harness quirk, no DMA heaps in this kernel."""

        def __init__(self) -> None:
            super().__init__()
            self.frame_buffers: dict = {}
            self.fds: list[int] = []
            self.maps: dict = {}  # FrameBuffer -> mmap of its whole memfd
            self.sync = MemfdSync

        def allocate(self, libcamera_config, _use_case) -> None:
            self.close()
            for n, stream_config in enumerate(libcamera_config):
                buffers = []
                for i in range(stream_config.buffer_count):
                    fd = os.memfd_create(f"bodycam-test-{n}-{i}")
                    os.ftruncate(fd, stream_config.frame_size)
                    self.fds.append(fd)
                    buffer = libcamera.FrameBuffer(
                        [_plane(fd, offset, length) for offset, length in _layout(stream_config)])
                    self.maps[buffer] = mmap.mmap(fd, stream_config.frame_size, mmap.MAP_SHARED,
                                                  mmap.PROT_READ | mmap.PROT_WRITE)
                    buffers.append(buffer)
                self.frame_buffers[stream_config.stream] = buffers

        def buffers(self, stream):
            return self.frame_buffers[stream]

        def close(self) -> None:
            for memory in self.maps.values():
                memory.close()
            for fd in self.fds:
                os.close(fd)
            self.fds, self.frame_buffers, self.maps = [], {}, {}

    class MemfdSync(Sync):
        """The buffer's whole memfd, mapped once: libcamera hands each plane its own
        duplicate of the fd, which picamera2's plain ``Sync`` takes for separate memory."""

        def __init__(self, allocator, fb, write) -> None:
            self._memory = allocator.maps[fb]

        def __enter__(self):
            return self._memory

        def __exit__(self, *exc) -> None:
            pass

    def _plane(fd: int, offset: int, length: int):
        plane = libcamera.FrameBuffer.Plane()
        plane.fd, plane.offset, plane.length = fd, offset, length
        return plane

    def _layout(stream_config) -> list[tuple[int, int]]:
        """(offset, length) of each colour plane in one buffer: the virtual camera maps
        NV12's two planes separately, so a single plane would not do."""
        if str(stream_config.pixel_format) != "NV12":
            return [(0, stream_config.frame_size)]
        luma = stream_config.stride * stream_config.size.height
        return [(0, luma), (luma, stream_config.frame_size - luma)]

    class VirtualPicamera2(Picamera2):
        """Picamera2 on the virtual camera: memfd buffers, no raw stream, paced frames."""

        def __init__(self, camera_num: int = 0) -> None:
            self._pace_next: float | None = None
            self._user_pre_callback = None
            super().__init__(camera_num, allocator=MemfdAllocator())

        def close(self) -> None:
            try:
                super().close()
            except RuntimeError as exc:
                # picamera2 puts a fresh DmaAllocator in place once all is released;
                # without DMA heaps that last step fails, and nothing is left open.
                if "dmaHeap" not in str(exc):
                    raise

        def _get_raw_modes(self):
            # The virtual camera refuses the raw role that picamera2 asks for its sensor
            # modes: its largest processed size stands in for the sensor's.
            config = self.camera.generate_configuration([libcamera.StreamRole.VideoRecording])
            formats = config.at(0).formats
            sizes = [(s.width, s.height) for pix in formats.pixel_formats
                     for s in formats.sizes(pix)]
            return [{"format": "NV12", "size": max(sizes, key=lambda wh: wh[0] * wh[1])}]

        def create_video_configuration(self, *args, **kwargs):
            kwargs["raw"] = None  # the virtual camera refuses the raw role
            return super().create_video_configuration(*args, **kwargs)

        @property
        def pre_callback(self):
            return self._paced if self._user_pre_callback is not None else None

        @pre_callback.setter
        def pre_callback(self, callback) -> None:
            self._user_pre_callback = callback
            self._pace_next = None

        stall_s = 0.0  # set by a test: the next frame is held this long (a wedged sensor)

        def _paced(self, request) -> None:
            if self.stall_s:
                stall, self.stall_s = self.stall_s, 0.0
                time.sleep(stall)
                self._pace_next = None
            now = time.monotonic()
            if self._pace_next is None:
                self._pace_next = now
            elif self._pace_next > now:
                time.sleep(self._pace_next - now)
            self._pace_next += 1.0 / fps
            callback = self._user_pre_callback
            if callback is not None:
                callback(request)

    class FrameCountedEncoder(LibavH264Encoder):
        """libx264 through picamera2, frames timed by their count: harness quirk."""

        def _timestamp(self, request) -> int:
            if self.firsttimestamp is None:
                self._frames = 0
                return super()._timestamp(request)  # sets firsttimestamp; 0
            self._frames += 1
            return round(self._frames * 1_000_000 / fps)

    return VirtualPicamera2, FrameCountedEncoder
