"""The Vosk model: fetch it, install it, find it, load it once per process.

Without a model the hotline still works (it takes keys and recordings), so a missing or
broken model is a status to report plainly, never a crash. Nothing here runs at import time.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import stat
import tempfile
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

log = logging.getLogger("callcenter.asr")

MODEL_NAME = "vosk-model-small-cn-0.22"
MODEL_URL = "https://alphacephei.com/vosk/models/vosk-model-small-cn-0.22.zip"
MODEL_SHA256 = "3af8b0e7e0f835ae9d414ce5df580237a3cfb08d586c9fbbb0f7ff29ad5b14ba"

SETUP_COMMAND = "callcenter setup asr"
_CHUNK = 1 << 16


class ModelError(Exception):
    """The model cannot be fetched, installed or loaded; the message says why and what to do."""


# ---------------------------------------------------------------- checksums

def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _check_sha256(actual: str, expected: str, what: str) -> None:
    if actual.lower() != expected.lower():
        raise ModelError(f"校验失败 / checksum mismatch for {what}: expected sha256 {expected.lower()}, got {actual}")


# ---------------------------------------------------------------- layout

def missing_parts(path: Path) -> list[str]:
    """What a Vosk model directory lacks (empty when it looks complete). Cheap: no loading."""
    needed = ["am/final.mdl", "conf/model.conf"]
    missing = [part for part in needed if not (path / part).is_file()]
    has_static_graph = (path / "graph/HCLG.fst").is_file()
    has_lookahead_graph = (path / "graph/HCLr.fst").is_file() and (path / "graph/Gr.fst").is_file()
    if not (has_static_graph or has_lookahead_graph):
        missing.append("graph/HCLG.fst (or graph/HCLr.fst + graph/Gr.fst)")
    return missing


# ---------------------------------------------------------------- install from a zip archive

def install_from_archive(zip_path: str | Path, models_dir: str | Path, sha256: str = MODEL_SHA256) -> Path:
    """Verify, unpack and move a model archive into ``models_dir``; returns the model directory.

    The checksum is verified before a single byte is unpacked. Unpacking goes to a temporary
    directory beside the destination and is renamed into place, so a half-written model is never
    visible under its real name (an interrupted install leaves only a ``.install-*`` directory).
    """
    zip_path, models_dir = Path(zip_path), Path(models_dir)
    try:
        actual = sha256_of(zip_path)
    except OSError as error:
        raise ModelError(f"无法读取模型压缩包 / cannot read the model archive {zip_path}: {error.strerror}") from None
    _check_sha256(actual, sha256, zip_path.name)

    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".install-", dir=models_dir))
    try:
        top_level = _unpack(zip_path, staging)
        model_root = staging / top_level if top_level else staging
        name = top_level or zip_path.name.removesuffix(".zip")
        missing = missing_parts(model_root)
        if missing:
            raise ModelError(f"压缩包里不是 Vosk 模型 / {zip_path.name} does not hold a Vosk model "
                             f"(missing {', '.join(missing)})")
        return _move_into_place(model_root, models_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unpack(zip_path: Path, target: Path) -> str | None:
    """Extract after checking every member; returns the single top-level directory, if there is one."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = archive.infolist()
            for member in members:
                _refuse_unsafe(member)
            archive.extractall(target)
    except zipfile.BadZipFile as error:
        raise ModelError(f"模型压缩包已损坏 / {zip_path.name} is not a valid zip: {error}") from None
    tops = {PurePosixPath(member.filename).parts[0] for member in members}
    if len(tops) == 1 and any(len(PurePosixPath(member.filename).parts) > 1 for member in members):
        return tops.pop()
    return None


def _refuse_unsafe(member: zipfile.ZipInfo) -> None:
    """Refuse names that would land outside the target (zip slip) and links that could point out."""
    name = member.filename.replace("\\", "/")
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
        raise ModelError(f"压缩包含有不安全的路径 / unsafe path in the archive: {member.filename!r}")
    if stat.S_ISLNK(member.external_attr >> 16):
        raise ModelError(f"压缩包含有符号链接 / the archive contains a symbolic link: {member.filename!r}")


def _move_into_place(source: Path, destination: Path) -> Path:
    """Rename ``source`` to ``destination``; an existing model there is swapped out, then removed."""
    previous = None
    if destination.exists():
        previous = destination.with_name(f".replaced-{destination.name}-{os.getpid()}")
        shutil.rmtree(previous, ignore_errors=True)
        os.rename(destination, previous)
    os.rename(source, destination)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
    return destination


# ---------------------------------------------------------------- download

Progress = Callable[[int, "int | None"], None]  # (bytes on disk, total bytes or None when unknown)


def download(url: str, dest: str | Path, sha256: str, progress: Progress | None = None,
             timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` left by an interrupted run.

    The part file is only renamed to ``dest`` after its sha256 matches; a complete file with the
    wrong checksum is deleted so that the next run starts clean instead of "resuming" garbage.
    """
    dest = Path(dest)
    if not url.startswith(("http://", "https://")):
        raise ModelError(f"只支持 HTTP(S) 下载 / only http(s) URLs can be downloaded: {url}")
    if dest.is_file() and sha256_of(dest) == sha256.lower():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        _fetch(url, part, progress, timeout)
    except urllib.error.HTTPError as error:
        raise ModelError(f"下载失败 / download failed: HTTP {error.code} {error.reason} for {url}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        size = part.stat().st_size if part.exists() else 0
        reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or error.__class__.__name__
        raise ModelError(f"下载中断 / download interrupted after {size} bytes ({reason}); "
                         f"run the same command again to resume") from None
    try:
        _check_sha256(sha256_of(part), sha256, url.rsplit("/", 1)[-1])
    except ModelError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


def _fetch(url: str, part: Path, progress: Progress | None, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (or rewrite it when the server cannot resume)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "callcenter-setup"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # nothing left to send: the part file may already be whole
            return
        raise
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored Range and sends the whole file: start over
        elif have and not response.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            part.unlink()
            raise ModelError(f"服务器续传位置错误 / the server resumed at the wrong offset "
                             f"({response.headers.get('Content-Range')}); run the same command again")
        total = _total_size(response)
        done = have
        with open(part, "ab" if have else "wb") as file:
            if progress:
                progress(done, total)
            while block := response.read(_CHUNK):
                file.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
    if total is not None and done < total:  # http.client returns b"" on an early close, not an error
        raise http.client.IncompleteRead(b"", total - done)


def _total_size(response) -> int | None:
    if response.status == 206:  # Content-Range: bytes 100-999/1000
        total = response.headers.get("Content-Range", "").rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


# ---------------------------------------------------------------- where is it, is it usable

State = Literal["ready", "missing", "broken"]


@dataclass(frozen=True)
class ModelStatus:
    state: State
    path: Path | None
    message: str  # Chinese + English, one line: for a log line, a health field, a console banner

    @property
    def ready(self) -> bool:
        return self.state == "ready"


def resolve_model_path(configured: str | None, data_dir: Path) -> Path | None:
    """The configured model path, else the installed default under ``data_dir/models``, else None."""
    if configured:
        return Path(configured).expanduser()
    default = Path(data_dir) / "models" / MODEL_NAME
    return default if default.exists() else None


def model_status(configured: str | None, data_dir: Path) -> ModelStatus:
    """Whether there is a usable model, judged from the files (loading is ``load_model``'s job)."""
    path = resolve_model_path(configured, data_dir)
    if path is None:
        return ModelStatus("missing", None,
                           f"未安装语音识别模型，热线只接受按键和录音；请运行 `{SETUP_COMMAND}` / "
                           f"no speech model installed: the hotline takes keys and recordings only; "
                           f"run `{SETUP_COMMAND}`")
    if not path.exists():
        return ModelStatus("missing", path,
                           f"配置的语音识别模型不存在：{path}；请检查配置或运行 `{SETUP_COMMAND}` / "
                           f"configured speech model not found: {path}; fix the setting or run `{SETUP_COMMAND}`")
    missing = missing_parts(path) if path.is_dir() else ["a directory (is this the unpacked folder?)"]
    if missing:
        return broken_status(path, f"missing {', '.join(missing)}")
    return ModelStatus("ready", path, f"语音识别模型就绪 / speech model ready: {path}")


def broken_status(path: Path, reason: str) -> ModelStatus:
    return ModelStatus("broken", path,
                       f"语音识别模型已损坏：{path}（{reason}）；请运行 `{SETUP_COMMAND}` 重新安装 / "
                       f"speech model is broken: {path} ({reason}); run `{SETUP_COMMAND}` to reinstall")


# ---------------------------------------------------------------- load once per process

_loaded: dict[Path, object] = {}
_loading = threading.Lock()


def load_model(path: str | Path):
    """The ``vosk.Model`` at ``path``, loaded on first use and shared by every call afterwards.

    A model takes seconds and hundreds of MB to load, so each process holds one copy (recognisers
    made from it are cheap and per call). A broken model raises ``ModelError``.
    """
    key = Path(path).expanduser().resolve()
    with _loading:  # also makes concurrent first calls wait for one load instead of starting several
        model = _loaded.get(key)
        if model is None:
            model = _loaded[key] = _open_model(key)
        return model


def _open_model(path: Path):
    if not path.is_dir():
        raise ModelError(f"模型目录不存在 / no model directory at {path}")
    missing = missing_parts(path)
    if missing:
        raise ModelError(f"模型不完整 / incomplete model at {path}: missing {', '.join(missing)}")
    import vosk

    vosk.SetLogLevel(-1)  # Kaldi's INFO chatter; its ERROR lines (why a load failed) still reach stderr
    try:
        model = vosk.Model(str(path))
        if getattr(model, "_handle", None) in (None, vosk._ffi.NULL):
            raise RuntimeError("null model handle")
        # Some damage (a truncated graph) only shows when a recogniser is built: find it now.
        vosk.KaldiRecognizer(model, 16000)
    except Exception as error:  # vosk raises bare Exception
        raise ModelError(f"无法加载模型 / cannot load the model at {path}: {error}") from None
    log.info("speech model loaded from %s", path)
    return model
