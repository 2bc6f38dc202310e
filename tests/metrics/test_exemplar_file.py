"""The per-process exemplar file of multiprocess mode: written in place, read by any process."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask_appmetrics.metrics.multiprocess.exemplar_file import (
    ExemplarFile,
    bucket_key,
    read_exemplars,
)
from flask_appmetrics.metrics.multiprocess.files import foreign_files


def key(le: str, endpoint: str = "/x") -> str:
    return bucket_key("h_bucket", {"endpoint": endpoint, "le": le})


def test_latest_write_of_each_bucket_is_read_back(tmp_path: Path) -> None:
    file = ExemplarFile(str(tmp_path))
    first, second, other = (secrets.token_hex(16) for _ in range(3))
    file.write(key("0.1"), first, 0.05, 100.0)
    file.write(key("0.1"), second, 0.07, 101.0)
    file.write(key("1.0"), other, 0.5, 99.0)
    read = read_exemplars(str(tmp_path))
    assert read == {
        ("h_bucket", (("endpoint", "/x"), ("le", "0.1"))): (second, 0.07, 101.0),
        ("h_bucket", (("endpoint", "/x"), ("le", "1.0"))): (other, 0.5, 99.0),
    }
    assert foreign_files(os.listdir(tmp_path)) == []
    file.close()


def test_the_file_grows_past_its_first_page(tmp_path: Path) -> None:
    file = ExemplarFile(str(tmp_path))
    traces = {f"/endpoint/{i}": secrets.token_hex(16) for i in range(200)}
    for endpoint, trace in traces.items():
        file.write(key("0.1", endpoint), trace, 0.01, 1.0)
    read = read_exemplars(str(tmp_path))
    assert {dict(labels)["endpoint"]: stored[0] for (_, labels), stored in read.items()} == traces
    assert os.path.getsize(file.path) > 4096
    file.close()


def test_a_payload_torn_by_a_concurrent_write_is_left_out(tmp_path: Path) -> None:
    file = ExemplarFile(str(tmp_path))
    kept = secrets.token_hex(16)
    file.write(key("0.1"), secrets.token_hex(16), 0.05, 1.0)
    file.write(key("1.0"), kept, 0.5, 1.0)
    file.close()
    data = bytearray(Path(file.path).read_bytes())
    # The first record's payload starts after the header, its key length and its key.
    start = 8 + 4 + len(key("0.1").encode()) + (8 - (len(key("0.1").encode()) + 4) % 8)
    data[start + 20] ^= 0xFF  # half of a write: the value changed, not its checksum
    Path(file.path).write_bytes(bytes(data))
    read = read_exemplars(str(tmp_path))
    assert [stored[0] for stored in read.values()] == [kept]


def test_the_file_of_an_exited_process_without_metric_files_is_deleted(tmp_path: Path) -> None:
    gone = tmp_path / "flask_appmetrics.exemplars.999999999"
    gone.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00")
    assert read_exemplars(str(tmp_path)) == {}
    assert not gone.exists()
