from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.data import write_npz

from mnistfc.cli import main as cli
from mnistfc.data.dataset import CANONICAL_CONTENT_SHA256, locate
from mnistfc.data.fetch import prepare
from mnistfc.errors import DataError, MnistfcError


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Serve a folder over HTTP on loopback, standing in for Keras's download origin."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", root
    server.shutdown()
    server.server_close()


def test_offline_download_is_a_clear_error(tmp_path: Path, capsys) -> None:
    code = cli.main(
        ["data", "prepare", "--to", str(tmp_path / "d"), "--origin", "http://127.0.0.1:9/"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "cannot download http://127.0.0.1:9/mnist.npz" in err and "offline" in err
    assert "Traceback" not in err
    assert not list((tmp_path / "d").glob("*.npz"))


def test_missing_file_on_the_mirror(mirror, tmp_path: Path) -> None:
    origin, _ = mirror
    with pytest.raises(MnistfcError, match="HTTP 404"):
        prepare("mnist", tmp_path / "d", origin)


def test_a_download_with_the_wrong_content_is_refused_and_not_kept(
    mirror, tmp_path: Path, arrays
) -> None:
    origin, root = mirror
    write_npz(root, arrays)
    with pytest.raises(DataError, match="content checksum mismatch for mnist"):
        prepare("mnist", tmp_path / "d", origin)
    assert [p.name for p in (tmp_path / "d").iterdir()] == []


@pytest.mark.slow
def test_download_verify_and_then_found_by_jobs(
    mirror, tmp_path: Path, real_mnist_dir: Path, capsys
) -> None:
    origin, root = mirror
    (root / "mnist.npz").write_bytes((real_mnist_dir / "mnist.npz").read_bytes())
    assert cli.main(["data", "prepare", "--to", str(tmp_path / "d"), "--origin", origin]) == 0
    assert CANONICAL_CONTENT_SHA256["mnist"] in capsys.readouterr().out
    assert locate("mnist", tmp_path / "d") == (tmp_path / "d" / "mnist.npz",)
    # a second prepare verifies what is there and downloads nothing
    (root / "mnist.npz").unlink()
    assert cli.main(["data", "prepare", "--to", str(tmp_path / "d"), "--origin", origin]) == 0
