"""Helpers the libtorrent interop scripts share: files, hashes, logs, the namespace check."""

import hashlib
import os
import re
import subprocess
import sys


def sha256(path):
    """The SHA-256 of a file, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_file(path, size):
    """A file of `size` random bytes."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(os.urandom(n))
            left -= n


def plain_log(text):
    """`text` without terminal colours."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def rate(size, took):
    """Bytes over seconds, in MiB/s, for people."""
    return f"{size / took / (1 << 20):.1f} MiB/s"


def check_setup(binary):
    """Exits unless `binary` exists and this runs in a namespace with no route off the host."""
    if not os.path.exists(binary):
        sys.exit(f"no webtorrent binary at {binary}: cargo build -p webtorrent --bin webtorrent")
    if subprocess.run(["ip", "route", "get", "1.1.1.1"], capture_output=True).returncode == 0:
        sys.exit("refusing to run with a route off this host: use tests/netns.sh")


def run_in_temp(binary, prefix, run):
    """Checks the setup, then runs `run(folder)` in a fresh temporary folder, removed after."""
    import shutil
    import tempfile

    check_setup(binary)
    work = tempfile.mkdtemp(prefix=prefix)
    # Our CLI's state folder (fast-resume records, which `seed` starts again): this run's own.
    os.environ["XDG_DATA_HOME"] = os.path.join(work, "state")
    try:
        run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
