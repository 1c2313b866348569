"""A real Orthanc PACS for tests: started on 127.0.0.1 with a generated configuration, stopped by the test.

Needs the Debian packages ``orthanc`` and ``orthanc-dicomweb`` (``.ci/run`` installs them); tests skip
when the ``Orthanc`` binary is missing. Storage, index and log live in the test's temporary folder.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ORTHANC_BINARY = shutil.which("Orthanc") or "/usr/sbin/Orthanc"  # /usr/sbin may be missing from a user's PATH
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def orthanc_available() -> bool:
    return Path(ORTHANC_BINARY).is_file() and DICOMWEB_PLUGIN.exists()


class Orthanc:
    """One Orthanc process: AE title ``ORTHANC`` on ``dicom_port``, REST and DICOMweb on ``http_port``."""

    def __init__(self, workdir: Path, dicom_port: int | None = None, http_port: int | None = None,
                 modalities: dict[str, tuple[str, str, int]] | None = None) -> None:
        self.workdir = Path(workdir)
        self.dicom_port = dicom_port or free_port()
        self.http_port = http_port or free_port()
        self.modalities = modalities or {}  # name -> (AE title, host, port) that Orthanc may send to
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def stow_url(self) -> str:
        return f"{self.url}/dicom-web/studies"

    def start(self, timeout: float = 30.0) -> Orthanc:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "ctdenoise-test",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "storage"),
            "DicomAet": "ORTHANC",
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "SaveJobs": False,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomModalities": {name: list(peer) for name, peer in self.modalities.items()},
        }
        path = self.workdir / "orthanc.json"
        path.write_text(json.dumps(config))
        log = open(self.workdir / "orthanc.log", "ab")
        self.process = subprocess.Popen([ORTHANC_BINARY, str(path)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}; see {self.workdir / 'orthanc.log'}")
            try:
                self.get("/system")
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout} s; see {self.workdir / 'orthanc.log'}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:  # a clean stop takes Orthanc seconds; its storage is the test's temporary folder
                self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def get(self, path: str):
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
            return json.loads(response.read())

    def post(self, path: str, payload: dict):
        request = urllib.request.Request(f"{self.url}{path}", data=json.dumps(payload).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def series(self) -> list[dict]:
        """Every series Orthanc holds, as ``/series/{id}`` returns it."""
        return [self.get(f"/series/{sid}") for sid in self.get("/series")]

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
