"""Downloads against a local HTTP server (127.0.0.1, a thread; never the network): checksum, resume
from a partial .part file with an HTTP Range request, clear one-line errors, and the whole
`transrec download` step unpacking an archive and writing the manifest."""
from __future__ import annotations

import hashlib
import io
import json
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from PIL import Image

from transrec.cli import main
from transrec.data.fetch import download
from transrec.errors import TransrecError

REPO = Path(__file__).resolve().parents[1]


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        srv = self.server
        rng = self.headers.get("Range")
        srv.log.append((self.path, rng))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        if rng and srv.ranges:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            payload = body[start:]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            payload = body
            self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.log, srv.ranges = {}, [], True
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ml100k_zip() -> bytes:
    """A zip shaped like GroupLens' ml-100k.zip: everything inside one ml-100k/ folder."""
    buf = io.BytesIO()
    poster = io.BytesIO()
    Image.new("RGB", (20, 30), (120, 40, 40)).save(poster, "JPEG")
    flags = "|".join(["0"] * 18 + ["1"])
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ml-100k/u.data", "".join(f"{u}\t{i}\t4\t{880000000 + 10 * u + i}\n"
                                              for u in (1, 2, 3) for i in (1, 2, 3)))
        zf.writestr("ml-100k/u.item", "".join(f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|{flags}\n"
                                              for i in (1, 2, 3)))
        zf.writestr("ml-100k/posters/1.jpg", poster.getvalue())
        zf.writestr("ml-100k/README", "MovieLens-like fixture\n" * 200)  # some bulk, for a real partial file
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- fetch.download

def test_download_with_checksum(server, tmp_path):
    data = ml100k_zip()
    server.files["/ml-100k.zip"] = data
    dest = tmp_path / "raw" / "ml-100k.zip"
    assert download(server.url + "/ml-100k.zip", dest, sha(data)) == dest
    assert dest.read_bytes() == data and not dest.with_name("ml-100k.zip.part").exists()
    assert server.log == [("/ml-100k.zip", None)]
    # present and verified: no second request
    download(server.url + "/ml-100k.zip", dest, sha(data))
    assert len(server.log) == 1


def test_checksum_mismatch_is_one_line_and_removes_the_part(server, tmp_path):
    data = ml100k_zip()
    server.files["/ml-100k.zip"] = data
    dest = tmp_path / "ml-100k.zip"
    with pytest.raises(TransrecError) as exc:
        download(server.url + "/ml-100k.zip", dest, "0" * 64)
    msg = str(exc.value)
    assert "\n" not in msg and "checksum mismatch" in msg and sha(data) in msg
    assert not dest.exists() and not dest.with_name("ml-100k.zip.part").exists()


def test_resume_from_partial_file_uses_a_range_request(server, tmp_path):
    data = ml100k_zip()
    server.files["/ml-100k.zip"] = data
    dest = tmp_path / "ml-100k.zip"
    half = len(data) // 2
    dest.with_name("ml-100k.zip.part").write_bytes(data[:half])
    download(server.url + "/ml-100k.zip", dest, sha(data))
    assert server.log == [("/ml-100k.zip", f"bytes={half}-")]
    assert dest.read_bytes() == data


def test_resume_when_server_ignores_range_starts_over(server, tmp_path):
    data = ml100k_zip()
    server.files["/ml-100k.zip"] = data
    server.ranges = False
    dest = tmp_path / "ml-100k.zip"
    dest.with_name("ml-100k.zip.part").write_bytes(b"stale bytes from another file")
    download(server.url + "/ml-100k.zip", dest, sha(data))
    assert dest.read_bytes() == data


def test_complete_part_file_is_finished_not_refetched(server, tmp_path):
    """A run interrupted after the last byte but before the rename: the server answers 416."""
    data = ml100k_zip()
    server.files["/ml-100k.zip"] = data
    dest = tmp_path / "ml-100k.zip"
    dest.with_name("ml-100k.zip.part").write_bytes(data)
    download(server.url + "/ml-100k.zip", dest, sha(data))
    assert server.log == [("/ml-100k.zip", f"bytes={len(data)}-")]
    assert dest.read_bytes() == data


def test_stale_part_longer_than_the_file_is_removed(server, tmp_path):
    data = ml100k_zip()
    server.files["/ml-100k.zip"] = data
    dest = tmp_path / "ml-100k.zip"
    part = dest.with_name("ml-100k.zip.part")
    part.write_bytes(data + b"tail of some other, longer file")
    with pytest.raises(TransrecError) as exc:
        download(server.url + "/ml-100k.zip", dest, None)
    assert "\n" not in str(exc.value) and "run again" in str(exc.value) and not part.exists()
    download(server.url + "/ml-100k.zip", dest, sha(data))   # the rerun gets it
    assert dest.read_bytes() == data


def test_unreachable_url_names_the_file_and_where_to_place_it(tmp_path):
    dest = tmp_path / "raw" / "ml-100k.zip"
    url = f"http://127.0.0.1:{closed_port()}/ml-100k.zip"
    with pytest.raises(TransrecError) as exc:
        download(url, dest, None, timeout=5)
    msg = str(exc.value)
    assert "\n" not in msg and url in msg and str(dest) in msg and "by hand" in msg


def test_http_404_is_one_line(server, tmp_path):
    dest = tmp_path / "missing.zip"
    with pytest.raises(TransrecError) as exc:
        download(server.url + "/missing.zip", dest, None)
    msg = str(exc.value)
    assert "\n" not in msg and "404" in msg and str(dest) in msg


# ---------------------------------------------------------------- the download step

def write_params(tmp_path: Path, location: dict) -> None:
    settings = yaml.safe_load((REPO / "params.yaml").read_text())["data"]
    settings["image"]["size"] = 16
    settings["filter"]["min_user_len"] = 3
    params = {"seed": 0, "paths": {"data": "data", "results": "results"}, "data": settings,
              "platforms": {"ml": {"adapter": "movielens", "location": location}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_download_step_fetches_unpacks_and_writes_manifest(server, tmp_path, monkeypatch):
    data = ml100k_zip()
    server.files["/ml-100k.zip"] = data
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, {"url": server.url + "/ml-100k.zip", "sha256": sha(data)})
    assert main(["download", "ml"]) == 0
    raw = tmp_path / "data" / "raw" / "ml"
    assert (raw / "ml-100k.zip").read_bytes() == data
    manifest = json.loads((raw / "manifest.json").read_text())
    root = Path(manifest["root"])
    assert root.name == "ml-100k" and root.is_dir()          # the archive's one folder is stepped into
    assert (root / "u.data").is_file() and (root / "posters" / "1.jpg").is_file()
    assert manifest["adapter"] == "movielens" and {"u.data", "u.item", "posters/"} <= set(manifest["files"])
    # the unpacked folder is what clean reads
    assert main(["clean", "ml"]) == 0
    clean = json.loads((tmp_path / "data" / "processed" / "ml" / "stats" / "clean.json").read_text())
    assert clean["interactions"]["read"] == 9 and clean["interactions"]["kept"] == 9
    assert clean["items"]["modality"] == {"both": 1, "text": 2}
    # a second download step finds the verified archive: no new request
    n = len(server.log)
    assert main(["download", "ml"]) == 0
    assert len(server.log) == n


def test_download_step_bad_checksum_exits_2_with_one_line(server, tmp_path, monkeypatch, capsys):
    server.files["/ml-100k.zip"] = ml100k_zip()
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, {"url": server.url + "/ml-100k.zip", "sha256": "f" * 64})
    assert main(["download", "ml"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("transrec")]
    assert len(err) == 1 and "checksum mismatch" in err[0]
    assert not (tmp_path / "data" / "raw" / "ml" / "manifest.json").exists()


def test_missing_folder_without_url_names_the_url(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, {"path": str(tmp_path / "not-here")})
    assert main(["download", "ml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "https://files.grouplens.org/datasets/movielens/ml-100k.zip" in err[0] and "not-here" in err[0]
    assert not (tmp_path / "data" / "raw" / "ml" / "manifest.json").exists()
