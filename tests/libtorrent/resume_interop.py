"""Fast resume with libtorrent as the leecher (Debian's python3-libtorrent), loopback-only
namespace: our CLI seeds a file, stops, and is started again on the same state folder; before
it serves again it must have read almost nothing of the file (rchar of /proc/PID/io), and
libtorrent then downloads the file from it (SHA-256 checked).

    tests/netns.sh /usr/bin/python3 tests/libtorrent/resume_interop.py [path/to/webtorrent] [SIZE_MIB]

SIZE_MIB defaults to 64 (CI); `1024` with a release binary is the issue's 1 GiB case.
"""

import os
import subprocess
import sys
import time

import libtorrent as lt

from common import run_in_temp, make_file, rate, sha256

BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "..", "target", "debug", "webtorrent")
SIZE_MIB = int(sys.argv[2]) if len(sys.argv) > 2 else 64
OUR_PORT = 6999
LT_PORT = 7897
TIMEOUT = 60 + SIZE_MIB // 4


def log(*a):
    print("[resume-interop]", *a, flush=True)


def rchar(pid):
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    return -1


def start_seed(path, state, tpath=None):
    """Our seeder; returns (process, seconds until it printed its magnet link)."""
    args = [BIN, "seed", path, "--no-dht", "--port", str(OUR_PORT), "--state", state, "--quiet"]
    if tpath:
        args += ["--torrent-out", tpath]
    t0 = time.time()
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline().strip()
    if not line.startswith("magnet:"):
        sys.exit(f"our seeder printed no magnet ({line!r})")
    return p, time.time() - t0


def stop(p):
    p.terminate()
    try:
        p.wait(20)
    except subprocess.TimeoutExpired:
        p.kill()
        sys.exit("our seeder did not stop on SIGTERM")


def run(work):
    size = SIZE_MIB << 20
    path = os.path.join(work, "resumed.bin")
    make_file(path, size)
    want = sha256(path)
    state = os.path.join(work, "state")
    tpath = os.path.join(work, "resumed.torrent")

    first, took = start_seed(path, state, tpath)
    first_read = rchar(first.pid)
    stop(first)
    log(f"first start: serving after {took:.2f} s, {first_read / 2**20:.1f} MiB read (hashing)")
    if first_read < size:
        sys.exit(f"the first start read {first_read} bytes of a {size} byte file: it did not hash it?")

    seed, took = start_seed(path, state)
    read = rchar(seed.pid)
    try:
        log(f"restart: serving after {took:.2f} s, {read / 2**20:.2f} MiB read")
        if read > min(size // 8, 4 << 20):
            sys.exit(f"the restarted seeder read {read} bytes of a {size} byte file before serving")
        ses = lt.session({
            "listen_interfaces": f"127.0.0.2:{LT_PORT}",
            "outgoing_interfaces": "127.0.0.2",
            "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
            "alert_mask": lt.alert.category_t.error_notification,
        })
        out = os.path.join(work, "lt-out")
        os.mkdir(out)
        h = ses.add_torrent({"ti": lt.torrent_info(tpath), "save_path": out})
        h.connect_peer(("127.0.0.1", OUR_PORT))
        t0 = time.time()
        while not h.status().is_seeding:
            if time.time() - t0 > TIMEOUT:
                sys.exit(f"libtorrent did not get the file from the restarted seeder in {TIMEOUT} s "
                         f"({h.status().progress * 100:.0f} %)")
            time.sleep(0.05)
        took = time.time() - t0
        if sha256(os.path.join(out, "resumed.bin")) != want:
            sys.exit("libtorrent's copy differs")
        log(f"libtorrent <- the restarted seeder: SHA-256 matches, {took:.2f} s, {rate(size, took)}")
    finally:
        stop(seed)


if __name__ == "__main__":
    run_in_temp(BIN, "wt-resume-", run)
