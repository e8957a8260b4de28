"""uservlm_ros.tools.cpu_latency: the PM QoS request is written, held while open, and refused
clearly."""

from __future__ import annotations

import os
import struct

import pytest

from uservlm_ros.tools.cpu_latency import CpuLatencyHold, LatencyError, idle_states


def test_holds_the_request_while_open_and_drops_it_on_exit(tmp_path):
    device = tmp_path / "cpu_dma_latency"  # a file stands in for the character device
    device.write_bytes(b"")
    hold = CpuLatencyHold(0, device=str(device))
    assert not hold.held and "kernel default" in hold.describe()
    with hold:
        assert hold.held
        assert struct.unpack("i", device.read_bytes()) == (0,)
        assert "held at 0 µs" in hold.describe()
        fd = hold._fd
        os.fstat(fd)  # open while held
    assert not hold.held
    with pytest.raises(OSError):
        os.fstat(fd)  # closed: the kernel would drop the request


def test_refusals_say_why_and_what_would_allow_it(tmp_path):
    with pytest.raises(LatencyError, match="does not exist"):
        CpuLatencyHold(device=str(tmp_path / "missing")).acquire()
    if os.geteuid() != 0:  # root may write a read-only file
        locked = tmp_path / "locked"
        locked.write_bytes(b"")
        locked.chmod(0o400)
        with pytest.raises(LatencyError, match="root"):
            CpuLatencyHold(device=str(locked)).acquire()
    with pytest.raises(ValueError):
        CpuLatencyHold(-1)


def test_idle_states_reads_the_driver_the_states_and_halt_polling(tmp_path):
    assert idle_states(str(tmp_path)) == ""  # no cpuidle in this tree
    cpuidle = tmp_path / "devices/system/cpu"
    (cpuidle / "cpuidle").mkdir(parents=True)
    (cpuidle / "cpuidle/current_driver").write_text("intel_idle\n")
    assert idle_states(str(tmp_path)) == "intel_idle"
    for index, name in enumerate(["POLL", "C1", "C6"]):
        (cpuidle / f"cpu0/cpuidle/state{index}").mkdir(parents=True)
        (cpuidle / f"cpu0/cpuidle/state{index}/name").write_text(name + "\n")
    assert idle_states(str(tmp_path)) == "intel_idle: POLL, C1, C6"
    (tmp_path / "module/haltpoll/parameters").mkdir(parents=True)
    (tmp_path / "module/haltpoll/parameters/guest_halt_poll_ns").write_text("0\n")
    assert idle_states(str(tmp_path)) == "intel_idle: POLL, C1, C6; guest halt polling 0 ns"
    assert isinstance(idle_states(), str)  # this machine's, whatever it has


def test_bench_and_up_refuse_low_latency_they_cannot_get(tmp_path, monkeypatch, capsys):
    from uservlm_ros.tools import cpu_latency
    from uservlm_ros.tools.bags import default_bag
    from uservlm_ros.tools.bench.config import BenchError, BenchOptions
    from uservlm_ros.tools.bench.run import run_bench
    from uservlm_ros.tools.cli import main

    monkeypatch.setattr(cpu_latency, "DEVICE", str(tmp_path / "no_such_device"))
    with pytest.raises(BenchError, match="--low-latency: .*does not exist"):
        run_bench(BenchOptions(bag=default_bag(), out=tmp_path / "bench", low_latency=True))
    assert main(["up", "--cloud", "--low-latency"]) == 2
    assert "--low-latency" in capsys.readouterr().err
