"""StreamMonitor: windowed rates, silence, and the estimate of frames lost before the node."""
import pytest

from streamdeq_ros.monitor import StreamMonitor


def test_lost_frames_are_estimated_from_gaps_in_the_stamps():
    m = StreamMonitor(start=0.0)
    period = 1 / 30
    sent = [k for k in range(300) if k % 3 != 2]             # every third frame never arrives
    for k in sent:
        m.received(now=k * period + 0.002, stamp_s=1000 + k * period)
    assert m.period() == pytest.approx(period, rel=0.01)
    assert m.lost == 300 - len(sent) - 1     # 99: frame 299 is lost too, but nothing came after
    assert m.loss_fraction() == pytest.approx(1 / 3, abs=0.01)


def test_jitter_repeats_and_a_restarted_source_count_nothing():
    m = StreamMonitor(start=0.0)
    t = 0.0
    for k in range(100):
        jitter = 0.004 if k % 2 else -0.004                 # +-12 % of a 30 Hz period
        t = k / 30 + jitter
        m.received(now=t, stamp_s=500 + t)
    m.received(now=t + 0.01, stamp_s=500 + t)               # the same stamp again
    m.received(now=t + 0.02, stamp_s=10.0)                  # a source that restarted its clock
    assert m.lost == 0 and m.count == 102


def test_rates_fall_to_zero_when_a_camera_stops():
    m = StreamMonitor(start=0.0, window_s=5.0)
    for k in range(100):                                     # 10 Hz for 10 s
        m.received(now=k / 10, stamp_s=k / 10)
        m.processed(now=k / 10 + 0.02, latency_ms=20.0)
    assert m.fps(10.0) == pytest.approx(10.0, abs=0.3)
    assert m.input_fps(10.0) == pytest.approx(10.0, abs=0.3)
    assert m.latency_ms(10.0, 95) == pytest.approx(20.0)
    assert m.silent_for(30.0) == pytest.approx(30.0 - 9.9)
    assert m.fps(30.0) == 0.0 and m.input_fps(30.0) == 0.0 and m.latency_ms(30.0, 50) is None


def test_a_camera_that_never_sent_is_silent_since_start():
    m = StreamMonitor(start=100.0)
    assert m.silent_for(103.5) == pytest.approx(3.5) and m.fps(101.0) == 0.0
    assert m.loss_fraction() == 0.0
