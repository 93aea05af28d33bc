"""GC tuning: applied by otpylib.run (and otpy-node run), never by importing otpylib.

Each case runs in its own interpreter: freezing objects and raising the
threshold in the test process would change the collector for every later test.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from otpylib.runtime.gc_tuning import GEN0_THRESHOLD, tune_gc


def _python(code: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_importing_otpylib_leaves_the_collector_alone() -> None:
    out = _python(
        """
        import gc
        before = gc.get_threshold()
        import otpylib, otpylib_dist, otpylib.process
        print(gc.get_threshold() == before, gc.get_freeze_count())
        """
    )
    assert out == ["True", "0"]


def test_run_tunes_the_collector_before_main_runs() -> None:
    out = _python(
        """
        import gc
        import otpylib

        async def main():
            print(gc.get_threshold()[0], gc.get_freeze_count() > 0)

        otpylib.run(main, use_uvloop=False)
        """
    )
    assert out == [str(GEN0_THRESHOLD), "True"]


def test_run_with_gc_tuning_off_leaves_it_alone() -> None:
    out = _python(
        """
        import gc
        import otpylib

        async def main():
            print(gc.get_threshold()[0], gc.get_freeze_count())

        otpylib.run(main, use_uvloop=False, gc_tuning=False)
        """
    )
    assert out == ["700", "0"]


@pytest.mark.parametrize("bad", [0, -5, 1.5, "100"])
def test_tune_gc_refuses_a_bad_threshold(bad: object) -> None:
    with pytest.raises(ValueError, match="positive int threshold"):
        tune_gc(bad)  # type: ignore[arg-type]
