"""What ``python -m build`` makes of the checkout: the sdist and the wheel users install.

The sdist carries the package, its metadata and the license, and no tests (they need the
whole repository and run from a checkout); the wheel is built from that sdist, as
``python -m build`` does by default, so a file the sdist lacks is missing from the wheel too.
"""

from __future__ import annotations

import email.parser
import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from pathlib import Path

import pytest

from flask_appmetrics import __version__

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "flask_appmetrics"
DIST = f"flask_appmetrics-{__version__}"


def package_files() -> set[str]:
    """Every file of the package in the checkout, as a path relative to the root."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / PACKAGE).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and the wheel built from it, without build isolation (the test group
    installs the build backend), so the test needs no download."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # setuptools says what it finds deprecated in the configuration: nothing may be.
    assert "deprecated" not in (done.stdout + done.stderr).lower(), done.stderr
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


def sdist_names(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as tar:
        names = {m.name for m in tar.getmembers() if m.isfile()}
    assert all(name.startswith(f"{DIST}/") for name in names), names
    return {name.removeprefix(f"{DIST}/") for name in names}


def wheel_metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(f"{DIST}.dist-info/METADATA").decode()
    return email.parser.Parser().parsestr(text)


def test_sdist_carries_the_package_license_and_metadata_and_no_tests(
    built: tuple[Path, Path],
) -> None:
    sdist, _ = built
    names = sdist_names(sdist)
    top = {name for name in names if "/" not in name}
    assert top == {"LICENSE", "MANIFEST.in", "PKG-INFO", "README.md", "pyproject.toml", "setup.cfg"}
    assert {name for name in names if name.startswith(f"{PACKAGE}/")} == package_files()
    others = names - top - package_files()
    assert all(name.startswith(f"{PACKAGE}.egg-info/") for name in others), others
    with tarfile.open(sdist) as tar:
        member = tar.extractfile(f"{DIST}/LICENSE")
        assert member is not None
        assert (ROOT / "LICENSE").read_bytes() == member.read()


def test_wheel_has_the_package_typed_with_its_templates_and_the_license(
    built: tuple[Path, Path],
) -> None:
    _, wheel = built
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        license_text = zf.read(f"{DIST}.dist-info/licenses/LICENSE").decode()
    info = f"{DIST}.dist-info/"
    assert {name for name in names if not name.startswith(info)} == package_files()
    assert f"{PACKAGE}/py.typed" in names
    # The status page's templates (the equality above holds them to the checkout's).
    assert [n for n in names if n.startswith(f"{PACKAGE}/web/templates/") and n.endswith(".html")]
    assert {name.removeprefix(info) for name in names if name.startswith(info)} == {
        "METADATA",
        "RECORD",
        "WHEEL",
        "top_level.txt",
        "entry_points.txt",  # the flask appmetrics command group
        "licenses/LICENSE",
    }
    assert license_text.startswith("MIT License")
    assert "Copyright (c) flask-appmetrics contributors" in license_text


def test_wheel_metadata_declares_license_classifiers_and_no_development_extra(
    built: tuple[Path, Path],
) -> None:
    _, wheel = built
    meta = wheel_metadata(wheel)
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["Requires-Python"] == ">=3.10"
    classifiers = set(meta.get_all("Classifier") or [])
    assert {
        "Framework :: Flask",
        "Typing :: Typed",
        "Development Status :: 4 - Beta",
        "Programming Language :: Python :: 3.10",
    } <= classifiers
    # A license expression replaces the license classifiers (PEP 639 forbids both).
    assert not [c for c in classifiers if c.startswith("License ::")]
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"redis", "sentry", "caching", "genai", "all"} <= extras
    # Test and lint tools are dependency groups of the checkout, never a published extra.
    assert not extras & {"test", "tests", "dev", "lint"}
    requires = " ".join(meta.get_all("Requires-Dist") or []).lower()
    for tool in ("pytest", "mypy", "ruff", "hypothesis"):
        assert tool not in requires, tool
