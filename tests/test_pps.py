"""PPS (issue 15): where the receiver's pulse-per-second line is wired (``gnss.pps_pin``),
each epoch is timed by the pulse that began its second."""

from __future__ import annotations

from gpiozero.pins.mock import MockFactory

from device.backends.nmea import QUIET_GAP_S, SerialGnss
from device.backends.pps import PpsLine
from simulator.clock import VirtualClock
from simulator.gnss import nmea_sentence

BURST = (nmea_sentence("GNRMC,101010.00,A,4807.038,N,01131.000,E,0.0,,010124,,,A")
         + nmea_sentence("GNGGA,101010.00,4807.038,N,01131.000,E,1,09,0.9,545.4,M,46.9,M,,")
         ).encode()


class Port:
    def __init__(self) -> None:
        self.pending = b""

    def read(self, size: int = 1) -> bytes:
        data, self.pending = self.pending[:size], self.pending[size:]
        return data

    def close(self) -> None:
        pass


def test_epoch_is_timed_by_the_pps_edge_before_its_burst():
    clock = VirtualClock()
    factory = MockFactory()
    pps = PpsLine(18, clock, pin_factory=factory)
    pin = factory.pin(18)
    port = Port()
    gnss = SerialGnss("fake", 115200, monotonic=clock, serial_port=port, pps=pps.edge_before)
    try:
        clock.advance(10.0)
        pin.drive_high()  # the pulse: top of the second
        clock.advance(0.001)
        pin.drive_low()
        clock.advance(0.349)  # the receiver computes, then sends; the reader polls late
        port.pending = BURST
        assert gnss.poll() == []
        clock.advance(QUIET_GAP_S)
        [fix] = gnss.poll()
        assert fix.received_at == 10.0 and fix.valid
    finally:
        gnss.close()
        pps.close()


def test_without_a_recent_pulse_the_burst_start_is_kept():
    clock = VirtualClock()
    factory = MockFactory()
    pps = PpsLine(18, clock, pin_factory=factory)
    pin = factory.pin(18)
    pin.drive_high()
    pin.drive_low()
    clock.advance(5.0)  # the last pulse is long gone (PPS not wired through, or lost)
    assert pps.edge_before(clock.now) is None
    port = Port()
    gnss = SerialGnss("fake", 115200, monotonic=clock, serial_port=port, pps=pps.edge_before)
    port.pending = BURST
    gnss.poll()
    clock.advance(QUIET_GAP_S)
    [fix] = gnss.poll()
    assert fix.received_at == 5.0
    pps.close()
