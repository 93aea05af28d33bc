"""Instructions per item of a fixed workload, counted by callgrind.

The figure to quote before and after a change to a hot path: instruction
counts do not move with the machine's load, and the difference between two
runs of different sizes cancels start-up and shut-down::

    python -m bench.ir_per_item "bench/dist_ir.py pid" 20000 60000 --uvloop
    python -m bench.ir_per_item "bench/gen_server_ir.py call" 1280 3840 --uvloop
    python -m bench.ir_per_item "bench/local_ir.py one-way" 5000 15000

The workload script gets its item count as the last positional argument,
then any further options given here (``--uvloop``). ``PYTHONHASHSEED`` is 0
unless set, so dict layouts and counts repeat from run to run. Needs
valgrind (``apt-get install valgrind``); exits with 2 and says so without it.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys

_COLLECTED = re.compile(r"Collected : (\d+)")


def instructions(command: list[str]) -> int:
    """Instructions callgrind counts for one run of ``command``."""
    env = {**os.environ, "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0")}
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    found = _COLLECTED.search(run.stderr)
    if run.returncode != 0 or found is None:
        sys.exit(f"{shlex.join(command)} failed ({run.returncode}):\n{run.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    """Print the instructions per item between two sizes of one workload."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "workload", help='the script and its arguments, e.g. "bench/dist_ir.py pid"'
    )
    parser.add_argument("small", type=int)
    parser.add_argument("large", type=int)
    args, extra = parser.parse_known_args()
    if args.large <= args.small:
        parser.error("the second size must be larger than the first")
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind): nothing measured")
        sys.exit(2)
    base = [sys.executable, *shlex.split(args.workload)]
    small = instructions([*base, str(args.small), *extra])
    large = instructions([*base, str(args.large), *extra])
    per_item = (large - small) / (args.large - args.small)
    print(f"{per_item:,.0f} instructions per item: {args.workload} {shlex.join(extra)}".rstrip())


if __name__ == "__main__":
    main()
