#!/usr/bin/python3
"""Swarm shapes bench (not a test): many peers at once, ours beside libtorrent and rqbit.

For each client and each shape, every peer is a process of that client:

  1x1  one seeder, one leecher;
  1x4  one seeder, four leechers starting together (they also trade among themselves);
  4x1  four seeders, one leecher.

All of them meet through a local bittorrent-tracker (HTTP) and swap the same .torrent
(made by `webtorrent create`). Measured from the moment the leechers start until the last
one has the file (its SHA-256 checked): total throughput (leechers x size / time), CPU
seconds of the leechers and of the seeders during the transfer, and each process's peak RSS.

Run it inside the loopback-only namespace, after `cargo build --release -p webtorrent`:

  tests/netns.sh /usr/bin/python3 bench/shapes.py [--size-mib 256] [--impls ours,libtorrent,rqbit]
      [--shapes 1x1,1x4,4x1] [--runs 1] [--out bench/shapes-results-latest.md]

libtorrent is Debian's python3-libtorrent with its `high_performance_seed` settings, over TCP only
(its uTP is several times slower on loopback);
rqbit is `rqbit` on PATH or in ~/.cargo/bin (bench/swarm.sh installs it). A client that is
missing is skipped with a note. BENCH_OURS_ARGS adds options to our commands (e.g. --no-utp).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "libtorrent"))
from common import sha256  # noqa: E402
PIECE = 256 * 1024
HZ = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[shapes {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------- libtorrent peer
def lt_peer(argv):
    """`shapes.py lt-peer seed|leech TORRENT DIR PORT`: one libtorrent session."""
    import libtorrent as lt

    role, torrent, folder, port = argv[0], argv[1], argv[2], int(argv[3])
    s = lt.high_performance_seed()
    s.update({
        "listen_interfaces": f"127.0.0.1:{port}",
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        # Every peer of the bench is on 127.0.0.1.
        "allow_multiple_connections_per_ip": True,
        # TCP only: libtorrent's uTP is several times slower on loopback (its best shown here).
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.tracker_notification,
    })
    ses = lt.session(s)
    atp = {"ti": lt.torrent_info(torrent), "save_path": folder}
    if role == "seed":
        atp["flags"] = lt.torrent_flags.seed_mode
    h = ses.add_torrent(atp)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    if role == "seed":
        # Ready once the tracker knows about it (leechers find it at their first announce).
        deadline = time.time() + 30
        while time.time() < deadline and not any(
                isinstance(a, lt.tracker_reply_alert) for a in ses.pop_alerts()):
            time.sleep(0.02)
    print("ready", flush=True)
    t0, seen = time.time(), set()
    while not stop:
        if role == "leech":
            st = h.status()
            for what, cond in (("peer", st.num_peers > 0), ("bytes", st.total_payload_download > 0),
                               ("half", st.progress >= 0.5)):
                if cond and what not in seen:
                    seen.add(what)
                    print(f"{what} after {time.time() - t0:.2f} s", file=sys.stderr, flush=True)
        if role == "leech" and h.status().is_seeding:
            print("done", flush=True)
            return
        time.sleep(0.02)


# ----------------------------------------------------------------- helpers
def cpu_of(pid):
    """User + system CPU seconds of a live process (0 if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ
    except OSError:
        return 0.0


class Proc:
    """A peer process whose exit is reaped with wait4 (for its peak RSS and CPU)."""

    def __init__(self, name, cmd, log_dir, env=None):
        self.name = name
        self.out = os.path.join(log_dir, f"{name}.out")
        self.err = os.path.join(log_dir, f"{name}.err")
        self.p = subprocess.Popen(cmd, stdout=open(self.out, "w"), stderr=open(self.err, "w"),
                                  env=env, start_new_session=True)
        self.status = None
        self.rusage = None
        self.ended = None

    def text(self):
        out = ""
        for f in (self.out, self.err):
            try:
                with open(f, errors="replace") as fh:
                    out += fh.read()
            except OSError:
                pass
        return out

    def poll(self):
        if self.status is None:
            pid, status, ru = os.wait4(self.p.pid, os.WNOHANG)
            if pid:
                self.status, self.rusage, self.ended = os.waitstatus_to_exitcode(status), ru, time.time()
                self.p.returncode = self.status
        return self.status

    def stop(self, grace=10):
        if self.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except OSError:
                pass
            deadline = time.time() + grace
            while self.poll() is None and time.time() < deadline:
                time.sleep(0.05)
            if self.poll() is None:
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except OSError:
                    pass
                while self.poll() is None:
                    time.sleep(0.05)

    def rss_mib(self):
        return self.rusage.ru_maxrss / 1024 if self.rusage else None


def wait_for(cond, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not within {timeout} s")


# ----------------------------------------------------------------- clients
class Client:
    def __init__(self, bench, impl):
        self.b = bench
        self.impl = impl

    def seeder(self, n, port):
        b, name = self.b, f"{self.impl}-seed{n}"
        if self.impl == "ours":
            state = os.path.join(b.work, f"state-{name}")
            cmd = [b.wt, "seed", b.torrent, "--data", b.data, "--state", state, "--port", str(port),
                   "--no-dht", "--no-port-mapping", *b.ours_args]
            p = Proc(name, cmd, b.work)
            ready = lambda: len(open(p.out).read().splitlines()) >= 2  # noqa: E731
        elif self.impl == "libtorrent":
            cmd = ["/usr/bin/python3", os.path.abspath(__file__), "lt-peer", "seed", b.torrent,
                   os.path.dirname(b.data), str(port)]
            p = Proc(name, cmd, b.work)
            ready = lambda: "ready" in p.text()  # noqa: E731
        else:
            home = tempfile.mkdtemp(prefix=f"home-{name}-", dir=b.work)
            cmd = [b.rqbit, *b.rqbit_flags, "download", "--overwrite", "-o", os.path.dirname(b.data), b.torrent]
            p = Proc(name, cmd, b.work, env=b.env_home(home))
            ready = lambda: "Initial check results" in p.text()  # noqa: E731
        wait_for(lambda: ready() or p.poll() is not None, 120 + b.size_mib / 50, f"{name} ready")
        if p.poll() is not None:
            raise RuntimeError(f"{name} exited ({p.status}): {p.text()[-600:]}")
        return p

    def leecher(self, n, port, out):
        b, name = self.b, f"{self.impl}-leech{n}"
        if self.impl == "ours":
            state = os.path.join(b.work, f"state-{name}")
            cmd = [b.wt, "download", b.torrent, "-o", out, "--state", state, "--port", str(port),
                   "--no-dht", "--no-port-mapping", "--timeout", str(b.timeout), "-q", *b.ours_args]
            return Proc(name, cmd, b.work)
        if self.impl == "libtorrent":
            cmd = ["/usr/bin/python3", os.path.abspath(__file__), "lt-peer", "leech", b.torrent, out, str(port)]
            return Proc(name, cmd, b.work)
        home = tempfile.mkdtemp(prefix=f"home-{name}-", dir=b.work)
        cmd = [b.rqbit, *b.rqbit_flags, "download", "-o", out, "--exit-on-finish", b.torrent]
        return Proc(name, cmd, b.work, env=b.env_home(home))


class Bench:
    def __init__(self, args):
        self.args = args
        self.size_mib = args.size_mib
        self.size = args.size_mib << 20
        self.timeout = 60 + args.size_mib
        # More options for our commands, e.g. BENCH_OURS_ARGS="--no-utp".
        self.ours_args = os.environ.get("BENCH_OURS_ARGS", "").split()
        self.wt = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "webtorrent")
        self.rqbit = shutil.which("rqbit") or os.path.expanduser("~/.cargo/bin/rqbit")
        self.rqbit_flags = ["--disable-dht", "--disable-dht-persistence", "--disable-upnp-port-forward",
                            "--disable-lsd", "--ipv4-only"]
        self.work = tempfile.mkdtemp(prefix="wt-shapes-")
        self.data = args.data or f"/tmp/webtorrent-bench-{args.size_mib}MiB.bin"
        self.port = 21000
        self.notes = []

    def env_home(self, home):
        env = dict(os.environ)
        for k in ("HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
            env[k] = home
        return env

    def next_port(self):
        self.port += 1
        return self.port

    def prepare(self):
        if not os.path.exists(self.wt):
            sys.exit(f"no release binary at {self.wt}: cargo build --release -p webtorrent")
        if subprocess.run(["ip", "route", "get", "1.1.1.1"], capture_output=True).returncode == 0:
            sys.exit("refusing to run with a route off this host: use tests/netns.sh")
        if not os.path.exists(self.data) or os.path.getsize(self.data) != self.size:
            log(f"writing {self.size_mib} MiB of random bytes to {self.data}")
            with open(self.data + ".tmp", "wb") as f:
                for _ in range(self.size_mib):
                    f.write(os.urandom(1 << 20))
            os.rename(self.data + ".tmp", self.data)
        self.want = sha256(self.data)
        self.tracker = Proc("tracker", ["node", os.path.join(ROOT, "tests/interop/tracker.mjs"), "--port", "0"], self.work)
        wait_for(lambda: '"ready"' in self.tracker.text(), 30, "tracker")
        port = json.loads(open(self.tracker.out).readline())["port"]
        self.announce = f"http://127.0.0.1:{port}/announce"
        self.torrent = os.path.join(self.work, "bench.torrent")
        subprocess.run([self.wt, "create", self.data, "--announce", self.announce, "--piece-length", str(PIECE),
                        "-o", self.torrent, "-q"], check=True, stdout=subprocess.DEVNULL)

    def available(self, impl):
        if impl == "rqbit":
            ok = os.path.exists(self.rqbit) and subprocess.run([self.rqbit, "--version"], capture_output=True).returncode == 0
            if not ok:
                return "rqbit is not installed (cargo install rqbit, or run bench/swarm.sh once)"
        if impl == "libtorrent" and subprocess.run(["/usr/bin/python3", "-c", "import libtorrent"]).returncode != 0:
            return "python3-libtorrent is not installed"
        return None

    def run_shape(self, impl, seeders, leechers, run):
        client = Client(self, impl)
        seeds, leeches = [], []
        try:
            for n in range(seeders):
                seeds.append(client.seeder(n, self.next_port()))
            # Give every seeder's `started` announce time to reach the tracker.
            time.sleep(1.0)
            cpu0 = [cpu_of(s.p.pid) for s in seeds]
            outs = []
            t0 = time.time()
            for n in range(leechers):
                out = os.path.join(self.work, f"out-{impl}-{run}-{n}")
                os.makedirs(out)
                outs.append(out)
                leeches.append(client.leecher(n, self.next_port(), out))
            deadline = t0 + self.timeout
            while time.time() < deadline:
                if all(l.poll() is not None for l in leeches):
                    break
                time.sleep(0.02)
            wall = max((l.ended or time.time()) for l in leeches) - t0
            seed_cpu = sum(cpu_of(s.p.pid) - c for s, c in zip(seeds, cpu0))
            for l in leeches:
                l.stop()
            ok = True
            for l, out in zip(leeches, outs):
                path = os.path.join(out, os.path.basename(self.data))
                if l.status != 0 or not os.path.exists(path) or sha256(path) != self.want:
                    ok = False
                    self.notes.append(f"{impl} {seeders}x{leechers} run {run}: {l.name} failed "
                                      f"(exit {l.status}): {l.text()[-400:]!r}")
                shutil.rmtree(out, ignore_errors=True)
        finally:
            for p in seeds + leeches:
                p.stop()
        leech_cpu = sum((l.rusage.ru_utime + l.rusage.ru_stime) for l in leeches if l.rusage)
        return {
            "impl": impl, "shape": f"{seeders}x{leechers}", "run": run, "ok": ok, "wall": wall,
            "mibps": leechers * self.size_mib / wall if ok else 0.0,
            "leech_cpu": leech_cpu, "seed_cpu": seed_cpu,
            "leech_rss": max(l.rss_mib() or 0 for l in leeches),
            "seed_rss": max(s.rss_mib() or 0 for s in seeds),
        }

    def close(self):
        self.tracker.stop()
        if self.args.keep:
            log(f"logs kept in {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def median(xs):
    xs = sorted(xs)
    if not xs:
        return None
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "lt-peer":
        return lt_peer(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--impls", default="ours,libtorrent,rqbit")
    ap.add_argument("--shapes", default="1x1,1x4,4x1")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--data", help="the file to share (default /tmp/webtorrent-bench-<size>MiB.bin)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder and logs")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "shapes-results-latest.md"))
    args = ap.parse_args()
    b = Bench(args)
    b.prepare()
    results = []
    impls = [i for i in args.impls.split(",") if i]
    try:
        for impl in list(impls):
            why = b.available(impl)
            if why:
                b.notes.append(f"{impl}: skipped, {why}")
                impls.remove(impl)
        for shape in args.shapes.split(","):
            s, l = (int(x) for x in shape.split("x"))
            for run in range(1, args.runs + 1):
                for impl in impls:
                    log(f"{impl} {shape} run {run}")
                    try:
                        r = b.run_shape(impl, s, l, run)
                    except Exception as e:  # a client that fails to start is a result too
                        b.notes.append(f"{impl} {shape} run {run}: {e}")
                        continue
                    log(f"{impl} {shape}: {r['wall']:.2f} s, {r['mibps']:.0f} MiB/s total, "
                        f"leechers {r['leech_cpu']:.1f} CPU s, seeders {r['seed_cpu']:.1f} CPU s, "
                        f"peak RSS leecher {r['leech_rss']:.0f} MiB / seeder {r['seed_rss']:.0f} MiB"
                        f"{'' if r['ok'] else ', FAILED'}")
                    results.append(r)
    finally:
        b.close()
    lines = [
        f"Swarm shapes bench, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: {args.size_mib} MiB, "
        f"piece {PIECE // 1024} KiB, {os.cpu_count()} cores, loopback, local bittorrent-tracker (HTTP); "
        f"medians of {args.runs} run(s). Throughput is leechers x size / time until the last leecher has the file.",
        "",
        "| shape | client | time | total throughput | leechers' CPU | seeders' CPU (transfer) | peak RSS leecher / seeder |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for shape in args.shapes.split(","):
        for impl in impls:
            rs = [r for r in results if r["impl"] == impl and r["shape"] == shape and r["ok"]]
            if not rs:
                lines.append(f"| {shape} | {impl} | failed | – | – | – | – |")
                continue
            med = lambda k: median([r[k] for r in rs])  # noqa: E731
            lines.append(f"| {shape} | {impl} | {med('wall'):.2f} s | {med('mibps'):.0f} MiB/s | "
                         f"{med('leech_cpu'):.1f} s | {med('seed_cpu'):.1f} s | "
                         f"{max(r['leech_rss'] for r in rs):.0f} / {max(r['seed_rss'] for r in rs):.0f} MiB |")
    if b.notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in b.notes]
    md = "\n".join(lines) + "\n"
    print(md)
    with open(args.out, "w") as f:
        f.write(md)
    log(f"written to {args.out}")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
