"""The SPIDER download helper, against a local HTTP server (never the internet)."""

import hashlib
import http.server
import threading
import zipfile
from functools import partial

import pytest

from disclatent.data.download import fetch_files


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "remote"
    root.mkdir()
    (root / "overview.csv").write_text("new_file_name\n1_t1\n")
    with zipfile.ZipFile(root / "masks.zip", "w") as zf:
        zf.writestr("masks/1_t1.mha", b"not really an image")
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", root, requests
    httpd.shutdown()
    httpd.server_close()


def sha(path):
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_verify_unpack_and_resume(server, tmp_path):
    url, remote, requests = server
    registry = {
        "overview.csv": sha(remote / "overview.csv"),
        "masks.zip": sha(remote / "masks.zip"),
    }
    out = tmp_path / "SPIDER"
    fetch_files(out, registry, base_url=url, progressbar=False)
    assert (out / "overview.csv").read_text() == "new_file_name\n1_t1\n"
    assert (out / "masks" / "1_t1.mha").read_bytes() == b"not really an image"
    n = len(requests)
    assert n == 2
    fetch_files(out, registry, base_url=url, progressbar=False)  # resume: nothing to fetch
    assert len(requests) == n


def test_checksum_mismatch_leaves_no_file(server, tmp_path):
    url, _, _ = server
    out = tmp_path / "SPIDER"
    with pytest.raises(ValueError, match="hash"):
        fetch_files(out, {"overview.csv": "sha256:" + "0" * 64}, base_url=url, progressbar=False)
    assert not (out / "overview.csv").exists()
    assert not any((out / ".download").glob("overview.csv*"))
