"""What the tests that start real gunicorn share."""

from __future__ import annotations

import sys
from pathlib import Path

from gunicorn.config import Config as GunicornConfig

GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
# gunicorn >= 25 opens a control socket in ~/.gunicorn by default, one path for every
# gunicorn on the machine: servers running side by side would take it from each other.
NO_CONTROL_SOCKET = (
    ["--no-control-socket"] if "control_socket_disable" in GunicornConfig().settings else []
)
