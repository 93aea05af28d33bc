"""The README's Python examples run as written and print what their comments say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _expected(code: str) -> list[str]:
    """What the ``print(...)  # <output>`` comments promise."""
    return re.findall(r"print\(.*\)\s+# (.+)$", code, flags=re.M)


def test_the_readme_has_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_a_readme_example_runs_and_prints_what_it_says(code: str) -> None:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    expected = _expected(code)
    assert expected, "each README example says what it prints"
    assert done.stdout.splitlines() == expected
