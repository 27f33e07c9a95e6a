"""Port mapping through a simulated NAT: our client behind a router running Debian's
miniupnpd maps its port by UPnP IGD, by NAT-PMP and by PCP, announces the mapped port, and a
libtorrent peer outside the NAT connects in and downloads (SHA-256 checked). Without a
mapping the same peer cannot get in, and a mapping is gone once our client exits.

The network is tests/nat.sh's (inside the namespace tests/netns.sh makes, which has no
route off the host): this script, the tracker and libtorrent outside on 11.0.0.1; our CLI
behind a router namespace (nftables masquerade, miniupnpd) on 192.168.77.2; another host on
192.168.77.3 holds our port outside, so the router must give us another one.

    tests/netns.sh /usr/bin/python3 tests/libtorrent/portmap_interop.py [path/to/webtorrent]

Needs root (named network namespaces), miniupnpd, nftables, node with tests/interop's npm
packages (the bittorrent-tracker server), python3-libtorrent. Exits non-zero on failure.
"""

import json
import os
import re
import subprocess
import sys
import threading
import time

import libtorrent as lt

from common import run_in_temp, make_file, plain_log, sha256

BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "..", "target", "debug", "webtorrent"))
HERE = os.path.dirname(os.path.abspath(__file__))
TRACKER_JS = os.path.join(HERE, "..", "interop", "tracker.mjs")
OUT_IP, WAN_IP, GW_IP, ME_IP, DECOY_IP = "11.0.0.1", "11.0.0.2", "192.168.77.1", "192.168.77.2", "192.168.77.3"
OUR_PORT = 6881
TRACKER_PORT = 8000
SIZE = 3 * 1024 * 1024 + 17
NAME = f"wtpm{os.getpid()}"
ROUTER = f"{NAME}-router"
CLIENT = f"{NAME}-client"

def log(*a):
    print("[portmap-interop]", *a, flush=True)


def sh(*args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


def in_router(*args):
    return sh("ip", "netns", "exec", ROUTER, *args)


NAT_SH = os.path.join(HERE, "..", "nat.sh")


def build_network():
    sh(NAT_SH, "up", NAME)


def remove_network():
    subprocess.run([NAT_SH, "down", NAME], capture_output=True)


def start_miniupnpd(work):
    conf = os.path.join(work, "miniupnpd.conf")
    with open(conf, "w") as f:
        f.write(f"""ext_ifname=rwan
listening_ip=rlan
port=0
enable_upnp=yes
enable_natpmp=yes
secure_mode=yes
system_uptime=yes
lease_file={work}/miniupnpd.leases
uuid=fc4ec57e-b051-11db-88f8-0060085db3f6
allow 1024-65535 192.168.77.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
""")
    logf = open(os.path.join(work, "miniupnpd.log"), "w+")
    p = subprocess.Popen(["ip", "netns", "exec", ROUTER, "miniupnpd", "-d", "-f", conf,
                          "-P", os.path.join(work, "miniupnpd.pid")], stdout=logf, stderr=logf)
    time.sleep(0.5)
    if p.poll() is not None:
        logf.seek(0)
        sys.exit(f"miniupnpd exited: {logf.read()[-2000:]}")
    return p, logf


DECOY = '''
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
s.settimeout(2)
for op in (1, 2):
    s.sendto(struct.pack("!BBHHHI", 0, op, 0, int(sys.argv[3]), int(sys.argv[3]), 3600), (sys.argv[2], 5351))
    a = s.recv(16)
    assert a[3] == 0 and struct.unpack("!H", a[10:12])[0] == int(sys.argv[3]), a
'''


def occupy_port():
    """Another host behind the NAT takes our port outside (TCP and UDP, by NAT-PMP), so the
    router must map us to another one, which we must then announce."""
    sh("ip", "netns", "exec", CLIENT, sys.executable, "-c", DECOY, DECOY_IP, GW_IP, str(OUR_PORT))


def redirects():
    """The port forwards miniupnpd has put in the router's NAT table, as 'proto port'."""
    out = in_router("nft", "list", "chain", "inet", "filter", "prerouting_miniupnpd")
    # miniupnpd writes raw matches: @nh,72,8 is the IPv4 protocol byte (6 TCP, 0x11 UDP).
    names = {"6": "tcp", "11": "udp"}
    return sorted({(names.get(p, p), port)
                   for p, port in re.findall(r"@nh,72,8 0x([0-9a-f]+) th dport (\d+) dnat", out)})


class Tracker:
    """The npm bittorrent-tracker server outside, recording the ports peers announce."""

    def __init__(self):
        self.proc = subprocess.Popen(
            ["node", TRACKER_JS, "--host", OUT_IP, "--port", str(TRACKER_PORT), "--no-udp", "--no-ws",
             "--interval", "5000", "--exit-with-stdin"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.lines = []
        first = json.loads(self.proc.stdout.readline())
        if first.get("event") != "ready":
            sys.exit(f"tracker did not start: {first}")
        threading.Thread(target=self._read, daemon=True).start()
        self.url = f"http://{OUT_IP}:{TRACKER_PORT}/announce"

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                pass

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(10)


def seed_behind_nat(work, path, tracker, extra):
    logf = open(os.path.join(work, f"seed{len(os.listdir(work))}.log"), "w+")
    tpath = os.path.join(work, "t.torrent")
    p = subprocess.Popen(
        ["ip", "netns", "exec", CLIENT, BIN, "seed", path, "--announce", tracker.url, "--no-dht",
         "--port", str(OUR_PORT), "--torrent-out", tpath, "--quiet"] + extra,
        stdout=subprocess.PIPE, stderr=logf, text=True,
        env={**os.environ, "RUST_LOG": "webtorrent=info,webtorrent::portmap=debug"})
    line = p.stdout.readline().strip()
    if not line.startswith("magnet:"):
        logf.seek(0)
        sys.exit(f"our seeder printed no magnet ({line!r}): {logf.read()[-3000:]}")
    return p, logf, tpath


def wait_log(logf, pattern, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        logf.seek(0)
        text = plain_log(logf.read())
        if re.search(pattern, text):
            return text
        time.sleep(0.1)
    return None


def lt_download(work, tpath, tracker, timeout):
    """libtorrent outside fetches the torrent, finding peers on the tracker only. Returns
    the copy's path, or None."""
    ses = lt.session({
        "listen_interfaces": f"{OUT_IP}:7000",
        "outgoing_interfaces": OUT_IP,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "alert_mask": lt.alert.category_t.error_notification,
    })
    dl = os.path.join(work, f"lt-{time.time_ns()}")
    os.mkdir(dl)
    ti = lt.torrent_info(tpath)
    h = ses.add_torrent({"ti": ti, "save_path": dl, "trackers": [tracker.url]})
    t0 = time.time()
    while time.time() - t0 < timeout:
        if h.status().is_seeding:
            return os.path.join(dl, ti.name())
        time.sleep(0.1)
    return None


def stop(proc):
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def scenario(work, path, want, tracker, method):
    mu, mulog = start_miniupnpd(work)
    occupy_port()
    seeder, logf, tpath = seed_behind_nat(work, path, tracker, ["--port-mapping", method])
    try:
        label = {"upnp": "UPnP", "natpmp": "NAT-PMP", "pcp": "PCP"}[method]
        text = wait_log(logf, rf"port mapped on the router method={label} protocol=TCP", 20)
        if text is None:
            logf.seek(0)
            mulog.seek(0)
            sys.exit(f"{label}: our client mapped no TCP port. Its log:\n{plain_log(logf.read())[-3000:]}\n"
                     f"miniupnpd:\n{mulog.read()[-2000:]}")
        ext = int(re.search(rf"method={label} protocol=TCP port=\d+ external_port=(\d+)", text).group(1))
        wait_log(logf, rf"method={label} protocol=UDP", 10)
        if ext == OUR_PORT:
            sys.exit(f"{label}: mapped to {OUR_PORT}, which another host holds on the router")
        fwd = redirects()
        if ("tcp", str(ext)) not in fwd:
            sys.exit(f"{label}: the router holds no TCP forward of port {ext}: {fwd}\n"
                     + in_router("nft", "list", "ruleset"))
        # The tracker hears the port outside (at once, not at the next interval).
        t0 = time.time()
        while not any(l.get("addr") == f"{WAN_IP}:{ext}" for l in tracker.lines):
            if time.time() - t0 > 10:
                sys.exit(f"{label}: the tracker never heard {WAN_IP}:{ext}: "
                         f"{[l.get('addr') for l in tracker.lines]}")
            time.sleep(0.1)
        got = lt_download(work, tpath, tracker, 60)
        if got is None:
            logf.seek(0)
            sys.exit(f"{label}: libtorrent outside did not get the file. Our log:\n{plain_log(logf.read())[-3000:]}")
        if sha256(got) != want:
            sys.exit(f"{label}: libtorrent's copy differs")
        log(f"{label}: mapped TCP {OUR_PORT} -> {WAN_IP}:{ext} ({OUR_PORT} outside is another host's; "
            f"router forwards {fwd}); announced {WAN_IP}:{ext} to the tracker at once; "
            f"libtorrent outside connected in and got the file, SHA-256 matches")
    finally:
        stop(seeder)
    # The router takes the removal requests in as our client exits: give it a moment.
    t0 = time.time()
    while True:
        after = redirects()
        gone = ("tcp", str(ext)) not in after and ("udp", str(ext)) not in after
        if gone or time.time() - t0 > 3:
            break
        time.sleep(0.1)
    if not gone:
        logf.seek(0)
        sys.exit(f"{label}: the forward of port {ext} is still on the router after our client exited: {after}\n"
                 f"{plain_log(logf.read())[-1500:]}")
    log(f"{label}: our client removed its mappings on exit")
    stop(mu)


def control(work, path, tracker):
    """Without port mapping, the same libtorrent peer cannot connect in."""
    mu, _ = start_miniupnpd(work)
    seeder, logf, tpath = seed_behind_nat(work, path, tracker, ["--no-port-mapping"])
    try:
        time.sleep(1)
        if any(p != str(OUR_PORT) for _, p in redirects()):
            sys.exit(f"--no-port-mapping: the router holds forwards anyway: {redirects()}")
        if lt_download(work, tpath, tracker, 8) is not None:
            sys.exit("--no-port-mapping: libtorrent got in anyway; the NAT does not block, so this test proves nothing")
        log("control: with --no-port-mapping, libtorrent outside could not connect in (8 s)")
    finally:
        stop(seeder)
        stop(mu)


def run(work):
    if os.geteuid() != 0:
        sys.exit("needs root (named network namespaces for the router and the client)")
    for tool in ("miniupnpd", "nft"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode != 0:
            sys.exit(f"{tool} is missing: apt-get install miniupnpd nftables")
    build_network()
    try:
        path = os.path.join(work, "behind-nat.bin")
        make_file(path, SIZE)
        want = sha256(path)
        tracker = Tracker()
        try:
            control(work, path, tracker)
            for method in ("upnp", "natpmp", "pcp"):
                scenario(work, path, want, tracker, method)
        finally:
            tracker.stop()
    finally:
        remove_network()


if __name__ == "__main__":
    run_in_temp(BIN, "wt-portmap-", run)
