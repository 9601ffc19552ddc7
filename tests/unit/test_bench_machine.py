"""The benchmark's reading of the machine: how much time the hypervisor stole."""

from __future__ import annotations

from pathlib import Path

from bench.machine import Steal, reference_ms


def _write(stat: Path, user: int, idle: int, steal: int) -> None:
    # The first line of /proc/stat: user nice system idle iowait irq softirq steal ...
    stat.write_text(f"cpu  {user} 0 0 {idle} 0 0 0 {steal} 0 0\ncpu0 1 2 3\n")


def test_steal_is_the_stolen_share_of_the_window(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    _write(stat, user=1_000, idle=5_000, steal=100)
    steal = Steal(stat)
    steal.start()
    _write(stat, user=1_600, idle=5_200, steal=300)  # 600 + 200 + 200 ticks spent

    assert steal.stop() == 20.0


def test_steal_is_unknown_where_the_kernel_does_not_say(tmp_path: Path) -> None:
    missing = Steal(tmp_path / "absent")
    missing.start()
    assert missing.stop() is None

    old = tmp_path / "old"
    old.write_text("cpu  1 2 3 4\n")  # kernels before 2.6.11 had no steal column
    short = Steal(old)
    short.start()
    assert short.stop() is None


def test_steal_is_unknown_over_a_window_where_no_time_passed(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    _write(stat, user=10, idle=10, steal=0)
    steal = Steal(stat)
    steal.start()
    assert steal.stop() is None


def test_the_reference_loop_takes_some_cpu_time() -> None:
    assert reference_ms() > 0
