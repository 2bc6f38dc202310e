"""Run files a user would paste (a ``conftest.py``, a test module) under pytest, for real.

Documentation that shows a pytest recipe is only right if pytest passes it as written: the
files go into a fresh directory and a separate pytest process runs them there, with
warnings as errors and no configuration of ours (the user's project has none of it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

#: The line pytest ends a run with: "3 passed in 0.12s" (possibly after other counts).
_PASSED = re.compile(r"\b([1-9]\d*) passed\b")


def run_pytest(files: dict[str, str], directory: Path) -> int:
    """Write *files* (name to text) into *directory*, run pytest there, and return how
    many tests passed.

    :raises AssertionError: pytest failed, or ran nothing; with its output.
    """
    for name, text in files.items():
        (directory / name).write_text(text)
    env = {
        key: value
        for key, value in os.environ.items()
        # The user's shell has neither: ours would change what the files do.
        if not key.startswith(("FLASK_", "APPMETRICS_", "PROMETHEUS_MULTIPROC"))
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-W",
            "error",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(directory),
            "--basetemp",
            str(directory / "pytest-tmp"),
            str(directory),
        ],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    passed = _PASSED.search(done.stdout)
    assert passed is not None, output
    return int(passed.group(1))
