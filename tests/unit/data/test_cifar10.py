"""CIFAR-10 through torchvision's real loader, on tiny archives in CIFAR-10's format."""

from __future__ import annotations

import functools
import hashlib
import http.server
import pickle
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from torchvision.datasets import CIFAR10

from edgecloud.data import cifar10 as cifar10_module
from edgecloud.data.cifar10 import load_cifar10
from edgecloud.exceptions import DatasetNotFoundError

_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_PER_BATCH = 4


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _write_batches(folder: Path, rng: np.random.Generator) -> dict[str, str]:
    """Write CIFAR-10's python-pickle batches (tiny); return file -> md5."""
    folder.mkdir(parents=True)
    sums = {}
    for index, name in enumerate([*_TRAIN, "test_batch"]):
        entry = {
            "batch_label": f"batch {index}",
            # rows are 3072 bytes: 1024 red, 1024 green, 1024 blue (CIFAR-10 layout)
            "data": rng.integers(0, 256, size=(_PER_BATCH, 3072), dtype=np.uint8),
            "labels": [int(x) for x in rng.integers(0, 10, size=_PER_BATCH)],
            "filenames": [f"img{index}_{j}.png" for j in range(_PER_BATCH)],
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
        sums[name] = _md5(folder / name)
    meta = {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    sums["batches.meta"] = _md5(folder / "batches.meta")
    return sums


@pytest.fixture
def tiny_cifar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An extracted tiny CIFAR-10 plus its .tar.gz served over HTTP on 127.0.0.1.

    torchvision's expected checksums and URL are patched to the tiny files.
    """
    cifar10_module._load_cached.cache_clear()
    source = tmp_path / "source"
    sums = _write_batches(source / "cifar-10-batches-py", np.random.default_rng(0))
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    # Only the expected checksums and the URL are replaced: the loading, checking,
    # downloading and extracting code is torchvision's own.
    monkeypatch.setattr(CIFAR10, "train_list", [[n, sums[n]] for n in _TRAIN])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", sums["test_batch"]]])
    monkeypatch.setattr(
        CIFAR10,
        "meta",
        {"filename": "batches.meta", "key": "label_names", "md5": sums["batches.meta"]},
    )
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(tmp_path)
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    monkeypatch.setattr(CIFAR10, "url", f"http://127.0.0.1:{port}/{archive.name}")
    monkeypatch.setattr(CIFAR10, "tgz_md5", _md5(archive))
    try:
        yield tmp_path
    finally:
        server.shutdown()
        server.server_close()
        cifar10_module._load_cached.cache_clear()


def test_loads_extracted_archive_through_torchvision(tiny_cifar: Path) -> None:
    # Execute
    train = load_cifar10(tiny_cifar / "source", train=True, download=False)
    test = load_cifar10(tiny_cifar / "source", train=False, download=False)

    # Assert: shapes in (N, C, H, W), channel planes as CIFAR-10 stores them
    assert train.features.shape == (5 * _PER_BATCH, 3, 32, 32)
    assert test.features.shape == (_PER_BATCH, 3, 32, 32)
    assert train.features.dtype == np.uint8 and train.labels.dtype == np.int64
    raw = pickle.loads(
        (tiny_cifar / "source/cifar-10-batches-py/test_batch").read_bytes()
    )
    np.testing.assert_array_equal(test.features[0, 0].ravel(), raw["data"][0, :1024])
    np.testing.assert_array_equal(test.labels, raw["labels"])


def test_downloads_and_extracts_when_missing(tiny_cifar: Path) -> None:
    # Execute: torchvision downloads the archive from the loopback HTTP server
    # The "download" goes to the fixture's HTTP server on 127.0.0.1, never a hub.
    from_loopback_server = True
    data = load_cifar10(tiny_cifar / "fresh", train=True, download=from_loopback_server)

    # Assert
    assert len(data) == 5 * _PER_BATCH
    assert (tiny_cifar / "fresh/cifar-10-batches-py/data_batch_1").exists()


def test_missing_dataset_without_download_names_the_fix(tiny_cifar: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="data-download=true"):
        load_cifar10(tiny_cifar / "empty", train=True, download=False)


def test_corrupted_batch_is_rejected(tiny_cifar: Path) -> None:
    # Prepare
    batch = tiny_cifar / "source/cifar-10-batches-py/data_batch_3"
    batch.write_bytes(batch.read_bytes()[:-10])

    # Execute / Assert
    with pytest.raises(DatasetNotFoundError, match="not found or corrupted"):
        load_cifar10(tiny_cifar / "source", train=True, download=False)
