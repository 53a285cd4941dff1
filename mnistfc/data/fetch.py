"""Download a dataset into a folder where jobs will find it, and verify what arrived.

Compute nodes are often offline, so this runs once on a login node (``mnistfc data prepare``).
A download is verified by content before it is moved into place: a failed or tampered
download never leaves a file that a later job could read.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from mnistfc.atomic import atomic_path
from mnistfc.data.dataset import CANONICAL_CONTENT_SHA256, KERAS_CACHE
from mnistfc.data.formats import IDX_PARTS, RawDataset, file_sha256, read_raw
from mnistfc.errors import DataError, MnistfcError

log = logging.getLogger(__name__)

KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
# The layout Keras's own loaders use in their cache, so either tool finds the other's files.
_LAYOUT = {
    "mnist": ("", ("mnist.npz",)),
    "fashion_mnist": (
        "fashion-mnist",
        tuple(f"{p}-{'idx3' if p.endswith('images') else 'idx1'}-ubyte.gz" for p in IDX_PARTS),
    ),
}
TIMEOUT_S = 60


def prepare(name: str, to_dir: str | Path | None = None, origin: str = KERAS_ORIGIN) -> RawDataset:
    """Download ``name`` into ``to_dir`` (default: Keras's cache) unless a verified copy is there.

    Raises:
        DataError: unknown dataset, or the downloaded content is not the published dataset.
        MnistfcError: the download failed (offline, HTTP error).
    """
    if name not in _LAYOUT:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(_LAYOUT)}")
    subdir, names = _LAYOUT[name]
    target = Path(to_dir or KERAS_CACHE).expanduser() / subdir
    final = tuple(target / n for n in names)
    if all(p.is_file() for p in final):
        raw = read_raw(name, final)
        _verify(raw)
        log.info("%s already present and verified in %s", name, target)
        return raw
    target.mkdir(parents=True, exist_ok=True)
    # Stage beside the target so the final copies stay on one file system.
    with tempfile.TemporaryDirectory(prefix=".mnistfc-fetch-", dir=target) as tmp:
        staged = tuple(Path(tmp) / n for n in names)
        for path in staged:
            _download(f"{origin.rstrip('/')}/{path.name}", path)
        raw = read_raw(name, staged)
        _verify(raw)
        for src, dst in zip(staged, final, strict=True):
            with atomic_path(dst) as tmp_dst:
                shutil.copyfile(src, tmp_dst)
    return read_raw(name, final)


def _verify(raw: RawDataset) -> None:
    expected = CANONICAL_CONTENT_SHA256[raw.name]
    actual = raw.content_sha256()
    if actual != expected:
        hashes = ", ".join(f"{p.name} sha256 {file_sha256(p)}" for p in raw.files)
        raise DataError(
            f"{raw.source}: content checksum mismatch for {raw.name} "
            f"(got {actual}, expected {expected}; files: {hashes}); delete the files and retry"
        )


def _download(url: str, path: Path) -> None:
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(path, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
    except urllib.error.HTTPError as exc:
        raise MnistfcError(
            f"cannot download {url}: the server answered HTTP {exc.code} {exc.reason}; "
            "check --origin"
        ) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise MnistfcError(
            f"cannot download {url}: {getattr(exc, 'reason', exc)}. This machine looks offline: "
            "run `mnistfc data prepare` where there is internet (e.g. a login node) and copy "
            "the files, or pass --data-dir to a folder that has them"
        ) from exc
