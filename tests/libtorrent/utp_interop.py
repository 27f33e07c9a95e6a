#!/usr/bin/python3
"""uTP (BEP 29) interop with libtorrent (Debian's python3-libtorrent), loopback-only namespace.

libtorrent runs with TCP off (in and out), so every byte moves over uTP; each copy is checked
by SHA-256 and libtorrent's peer flags must say uTP:
  1. libtorrent seeds; our CLI downloads (it dials uTP first, TCP only as a fallback);
  2. our CLI seeds; libtorrent downloads (it dials us over uTP);
  3. for the rates' sake, libtorrent to libtorrent over uTP in the same run.

    tests/netns.sh /usr/bin/python3 tests/libtorrent/utp_interop.py [path/to/webtorrent] [SIZE_MIB]

SIZE_MIB (default 8) is the file size; a large one with a release binary makes the printed
rates a comparison of the two uTP stacks. Exits non-zero on failure.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import libtorrent as lt

from common import run_in_temp, make_file, plain_log, rate, sha256

BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "..", "target", "debug", "webtorrent")
SIZE_MIB = int(sys.argv[2]) if len(sys.argv) > 2 else 8
LT_PORT = 7895
OUR_PORT = 6997
PIECE = 256 * 1024
TIMEOUT = 60 + SIZE_MIB // 2


def log(*a):
    print("[utp-interop]", *a, flush=True)


def settings(ip):
    return {
        "listen_interfaces": f"{ip}:{LT_PORT}",
        "outgoing_interfaces": ip,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_tcp": False,
        "enable_incoming_tcp": False,
        "enable_outgoing_utp": True,
        "enable_incoming_utp": True,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": lt.alert.category_t.error_notification,
    }


# peer_info::utp_socket (libtorrent's flag bit 17; the Python bindings do not name it, but
# they name its neighbours: holepunched is bit 15 and rc4_encrypted bit 19).
UTP_SOCKET = 1 << 17
assert int(lt.peer_info.holepunched) == 1 << 15 and int(lt.peer_info.rc4_encrypted) == 1 << 19


def cpu():
    """CPU seconds of this process (libtorrent's sessions) and its finished children."""
    t = os.times()
    return t.user + t.system, t.children_user + t.children_system


def lt_download(ses, tpath, peer, work):
    """Downloads with session `ses` from `peer`; returns (folder, seconds, saw uTP)."""
    dl = tempfile.mkdtemp(dir=work, prefix="lt-out-")
    h = ses.add_torrent({"ti": lt.torrent_info(tpath), "save_path": dl})
    h.connect_peer(peer)
    saw_utp = False
    t0 = time.time()
    while time.time() - t0 < TIMEOUT:
        for p in h.get_peer_info():
            if int(p.flags) & UTP_SOCKET:
                saw_utp = True
        if h.status().is_seeding:
            return dl, time.time() - t0, saw_utp
        time.sleep(0.02)
    st = h.status()
    log(f"libtorrent did not finish over uTP from {peer}: {st.state}, {st.num_peers} peers, "
        f"progress {st.progress:.2f}")
    return None, 0, saw_utp


def main():
    run_in_temp(BIN, "wt-utp-", run)


def run(work):
    size = SIZE_MIB * (1 << 20) + 4321
    src = os.path.join(work, "src")
    os.makedirs(src)
    name = "over-utp.bin"
    f = os.path.join(src, name)
    make_file(f, size)
    want = sha256(f)

    # libtorrent seeds over uTP only.
    seeder = lt.session(settings("127.0.0.2"))
    fs = lt.file_storage()
    lt.add_files(fs, f)
    ct = lt.create_torrent(fs, PIECE, flags=lt.create_torrent.v1_only)
    lt.set_piece_hashes(ct, src)
    tpath = os.path.join(work, "lt.torrent")
    with open(tpath, "wb") as out:
        out.write(lt.bencode(ct.generate()))
    seeder.add_torrent({"ti": lt.torrent_info(tpath), "save_path": src,
                        "flags": lt.torrent_flags.seed_mode})

    # 1. Ours downloads from it.
    out = os.path.join(work, "ours-out")
    os.makedirs(out)
    c0 = cpu()
    t0 = time.time()
    r = subprocess.run(
        [BIN, "download", tpath, "-o", out, "--peer", f"127.0.0.2:{LT_PORT}", "--no-dht",
         "--timeout", str(TIMEOUT), "--quiet"],
        capture_output=True, text=True, timeout=TIMEOUT + 30,
        env={**os.environ, "RUST_LOG": os.environ.get("LEECH_LOG", "webtorrent=info,webtorrent::task=debug")})
    took = time.time() - t0
    ours_cpu = cpu()[1] - c0[1]
    err = plain_log(r.stderr)
    if os.environ.get("LEECH_LOG"):
        print(err[-20000:])
    if r.returncode != 0:
        log("stderr:", err[-3000:])
        sys.exit(f"our download over uTP failed (exit {r.returncode})")
    if not re.search(r"outgoing peer .*transport=\"?utp", err):
        log("stderr:", err[-3000:])
        sys.exit("our download did not log a uTP peer")
    assert sha256(os.path.join(out, name)) == want, "our copy differs"
    log(f"ours <- libtorrent (uTP only): SHA-256 matches, {took:.2f} s, {rate(size, took)}, "
        f"our leecher {ours_cpu:.2f} CPU s")

    # 3. libtorrent to libtorrent over uTP, for comparison.
    leech = lt.session(settings("127.0.0.3"))
    c0 = cpu()
    dl, took, saw = lt_download(leech, tpath, ("127.0.0.2", LT_PORT), work)
    if dl is None:
        sys.exit("libtorrent to libtorrent failed")
    lt_cpu = cpu()[0] - c0[0]
    assert sha256(os.path.join(dl, name)) == want, "libtorrent's copy differs"
    if not saw:
        sys.exit("libtorrent to libtorrent did not use uTP")
    log(f"libtorrent <- libtorrent (uTP): {took:.2f} s, {rate(size, took)}, "
        f"both libtorrent sessions {lt_cpu:.2f} CPU s")
    shutil.rmtree(dl)
    del leech
    del seeder

    # 2. Ours seeds; libtorrent (uTP only) downloads.
    logf = open(os.path.join(work, "seed.log"), "w+")
    seed = subprocess.Popen(
        [BIN, "seed", tpath, "--data", f, "--no-dht", "--port", str(OUR_PORT), "--quiet"]
        + os.environ.get("SEED_ARGS", "").split(),
        stdout=subprocess.PIPE, stderr=logf, text=True,
        env={**os.environ, "RUST_LOG": os.environ.get("SEED_LOG", "webtorrent=info,webtorrent::client=debug")})
    try:
        line = seed.stdout.readline().strip()
        if not line.startswith("magnet:"):
            logf.seek(0)
            sys.exit(f"our seeder printed no magnet ({line!r}): {logf.read()[-2000:]}")
        leech = lt.session(settings("127.0.0.4"))
        dl, took, saw = lt_download(leech, tpath, ("127.0.0.1", OUR_PORT), work)
        if dl is None:
            logf.seek(0)
            log("our seeder's log:", plain_log(logf.read())[-4000:])
            sys.exit("libtorrent did not download from our seeder over uTP")
        assert sha256(os.path.join(dl, name)) == want, "libtorrent's copy differs"
        if not saw:
            sys.exit("libtorrent did not reach our seeder over uTP")
        logf.seek(0)
        if "incoming uTP connection" not in plain_log(logf.read()):
            sys.exit("our seeder did not log an incoming uTP connection")
        log(f"libtorrent (uTP only) <- ours: SHA-256 matches, {took:.2f} s, {rate(size, took)}")
    finally:
        seed.terminate()
        try:
            seed.wait(10)
        except subprocess.TimeoutExpired:
            seed.kill()


if __name__ == "__main__":
    main()
