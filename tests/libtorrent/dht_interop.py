#!/usr/bin/python3
"""DHT interop with libtorrent (Debian's python3-libtorrent), loopback-only namespace only.

A DHT of eight libtorrent nodes on 127.0.0.2-9, one of them seeding a torrent it announced
to the DHT only (no tracker). Then:
  1. our CLI downloads it by a magnet link with no tracker, bootstrapped from one libtorrent
     node (--dht-bootstrap), and the file's SHA-256 must match;
  2. our CLI seeds another file, announcing it to the DHT, and stops: its routing table is
     saved in the --state folder. Started again with the DHT at its defaults (the public
     routers, which do not resolve in the namespace) on another port, it rejoins from the
     saved table and announces; a new libtorrent session finds and downloads the file by a
     tracker-less magnet link;
  3. BEP 5 PORT: a libtorrent session with the DHT on but no bootstrap node connects to our
     seeder as a peer; our PORT message must put our node in its routing table.

    tests/netns.sh /usr/bin/python3 tests/libtorrent/dht_interop.py [path/to/webtorrent]

Prints the lookup times. Exits non-zero on failure.
"""

import os
import re
import subprocess
import sys
import time
import warnings

import libtorrent as lt

from common import run_in_temp, make_file, sha256

# session.status() is deprecated in libtorrent 2.0 but is the simple way to read dht_nodes.
warnings.filterwarnings("ignore", category=DeprecationWarning)

PORT = 7881
# Our restarted seeder's TCP and DHT port (the first run uses the one below it).
OUR_PORT = 6990
NODES = [f"127.0.0.{i}" for i in range(2, 10)]
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "..", "target", "debug", "webtorrent")


def log(*a):
    print("[dht-interop]", *a, flush=True)


def settings(ip, bootstrap):
    return {
        "listen_interfaces": f"{ip}:{PORT}",
        "outgoing_interfaces": ip,
        "enable_dht": True,
        "dht_bootstrap_nodes": bootstrap,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_ignore_dark_internet": False,
        "dht_prefer_verified_node_ids": False,
        "dht_announce_interval": 5,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": lt.alert.category_t.error_notification,
    }


def main():
    run_in_temp(BIN, "wt-dht-", run)


def run(work):
    boot = f"{NODES[0]}:{PORT}"
    sessions = []
    for i, ip in enumerate(NODES):
        sessions.append(lt.session(settings(ip, "" if i == 0 else boot)))
    # The seeder: node 1, a 3 MiB file, v1 torrent with no tracker.
    src = os.path.join(work, "lt-seed")
    os.makedirs(src)
    f1 = os.path.join(src, "from-libtorrent.bin")
    make_file(f1, 3 * 1024 * 1024 + 17)
    fs = lt.file_storage()
    lt.add_files(fs, f1)
    ct = lt.create_torrent(fs, 0, flags=lt.create_torrent.v1_only)
    lt.set_piece_hashes(ct, src)
    ti = lt.torrent_info(ct.generate())
    ih = str(ti.info_hash())
    seeder = sessions[1]
    seeder.add_torrent({"ti": ti, "save_path": src, "flags": lt.torrent_flags.seed_mode})
    log("libtorrent seeds", ih)
    # Let the DHT form and the seeder announce.
    deadline = time.time() + 10
    while time.time() < deadline:
        if all(s.status().dht_nodes >= 1 for s in sessions):
            break
        time.sleep(0.2)
    log("libtorrent DHT nodes:", [s.status().dht_nodes for s in sessions])
    # The seeder announces within dht_announce_interval (5 s) of joining.
    time.sleep(6)

    # 1. Our client downloads by a tracker-less magnet.
    out = os.path.join(work, "ours-out")
    os.makedirs(out)
    t0 = time.time()
    r = subprocess.run(
        [BIN, "download", f"magnet:?xt=urn:btih:{ih}", "-o", out, "--dht-bootstrap", boot,
         "--state", os.path.join(work, "download-state"), "--timeout", "90", "--quiet"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ,
             "RUST_LOG": os.environ.get("RUST_LOG", "webtorrent=info,webtorrent::dht=debug")})
    took = time.time() - t0
    if r.returncode != 0:
        log("stderr:", r.stderr[-3000:])
        sys.exit(f"our download by DHT failed (exit {r.returncode})")
    got = os.path.join(out, "from-libtorrent.bin")
    assert sha256(got) == sha256(f1), "the downloaded file differs"
    log(f"ours <- libtorrent by DHT magnet: {os.path.getsize(got)} bytes, SHA-256 matches, {took:.1f} s in all")
    # Our lookups (debug log `DHT lookup done ... queries=Q ... rounds=R ... ms=T`).
    for line in r.stderr.splitlines():
        if "DHT lookup done" in line:
            fields = dict(f.split("=", 1) for f in re.sub(r"\x1b\[[0-9;]*m", "", line).split() if "=" in f)
            log("our lookup: " + ", ".join(f"{k} {fields.get(k)}" for k in
                                           ("queries", "answers", "rounds", "peers", "ms")))

    # 2. Our client seeds; a new libtorrent session downloads by a tracker-less magnet.
    ours = os.path.join(work, "ours-seed")
    os.makedirs(ours)
    f2 = os.path.join(ours, "from-ours.bin")
    make_file(f2, 2 * 1024 * 1024 + 5)
    state = os.path.join(work, "ours-state")
    env = {**os.environ, "RUST_LOG": "webtorrent=info"}
    # Logs go to files: a full pipe would stall the seeder.
    log1 = open(os.path.join(work, "first.log"), "w+")
    log2 = open(os.path.join(work, "second.log"), "w+")
    first = subprocess.Popen(
        [BIN, "seed", f2, "--dht-bootstrap", boot, "--state", state, "--port", str(OUR_PORT - 1),
         "--quiet"],
        stdout=subprocess.PIPE, stderr=log1, text=True, env=env)
    magnet = first.stdout.readline().strip()
    time.sleep(3)
    first.terminate()
    first.wait(15)
    saved = os.path.join(state, "dht.dat")
    if not os.path.exists(saved):
        log1.seek(0)
        sys.exit(f"our seeder saved no DHT state in {state}: {log1.read()[-2000:]}")
    log(f"our seeder stopped; DHT state saved ({os.path.getsize(saved)} bytes)")
    seed = subprocess.Popen(
        [BIN, "seed", f2, "--state", state, "--port", str(OUR_PORT), "--quiet"],
        stdout=subprocess.PIPE, stderr=log2, text=True, env=env)
    try:
        again = seed.stdout.readline().strip()
        if not magnet.startswith("magnet:") or again != magnet:
            sys.exit(f"our seeder printed no magnet: {magnet!r} {again!r}")
        ih2 = magnet.split("btih:")[1].split("&")[0]
        # Wait for our announce to land (our first lookup runs at once).
        time.sleep(3)
        leech = lt.session(settings("127.0.0.20", boot))
        dl = os.path.join(work, "lt-out")
        os.makedirs(dl)
        p = lt.parse_magnet_uri(f"magnet:?xt=urn:btih:{ih2}")
        p.save_path = dl
        h = leech.add_torrent(p)
        t0 = time.time()
        while time.time() - t0 < 90:
            st = h.status()
            if st.is_seeding:
                break
            time.sleep(0.2)
        else:
            sys.exit(f"libtorrent did not get our torrent by DHT: {h.status().state}, "
                     f"{h.status().num_peers} peers, progress {h.status().progress:.2f}")
        took = time.time() - t0
        got2 = os.path.join(dl, "from-ours.bin")
        assert sha256(got2) == sha256(f2), "libtorrent's copy differs"
        log(f"libtorrent <- ours by DHT magnet: {os.path.getsize(got2)} bytes, SHA-256 matches, {took:.1f} s")

        # 3. BEP 5 PORT: an isolated libtorrent DHT node learns ours from the peer connection.
        lone = lt.session(settings("127.0.0.21", ""))
        time.sleep(1)
        if lone.status().dht_nodes != 0:
            sys.exit("the isolated libtorrent session already knows DHT nodes")
        p = lt.parse_magnet_uri(f"magnet:?xt=urn:btih:{ih2}")
        p.save_path = os.path.join(work, "lt-lone")
        h = lone.add_torrent(p)
        h.connect_peer(("127.0.0.1", OUR_PORT))
        t0 = time.time()
        while time.time() - t0 < 30 and lone.status().dht_nodes == 0:
            time.sleep(0.2)
        if lone.status().dht_nodes == 0:
            sys.exit("libtorrent did not add our DHT node after the peer connection (no PORT?)")
        log(f"libtorrent added our DHT node from our PORT message after {time.time() - t0:.1f} s")
    finally:
        seed.terminate()
        try:
            seed.wait(10)
        except subprocess.TimeoutExpired:
            seed.kill()
    log2.seek(0)
    err = log2.read()
    if "DHT state restored" not in err:
        sys.exit(f"the restarted seeder did not restore its DHT state: {err[-2000:]}")


if __name__ == "__main__":
    main()
