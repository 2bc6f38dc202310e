"""``promtool check metrics`` (Debian's prometheus package, installed by scripts/system-deps.sh)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: scripts/system-deps.sh installs it"
)


def lint(body: bytes) -> list[str]:
    """promtool's complaints about an exposition page, one per line (none when clean)."""
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=body, capture_output=True, check=False, timeout=30
    )
    return [line for line in (result.stdout + result.stderr).decode().splitlines() if line]
