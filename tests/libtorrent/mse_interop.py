#!/usr/bin/python3
"""Message stream encryption (MSE/PE) interop with libtorrent (Debian's python3-libtorrent).

Loopback-only namespace only. Each transfer is checked by SHA-256, and libtorrent's own peer
flags say how the connection was protected:
  1. libtorrent seeds with encryption forced (in and out, RC4 only); our CLI downloads with
     --encryption require;
  2. our CLI seeds with --encryption require; libtorrent (forced, RC4 only) downloads;
  3. plaintext negotiation: libtorrent forces the encrypted handshake but allows only the
     plaintext method after it; our seeder (--encryption prefer) must agree to plaintext;
  4. fallback: libtorrent with encryption disabled seeds; our CLI (--encryption prefer) dials
     encrypted, is refused, and retries plain;
  5. our seeder with --encryption require refuses libtorrent with encryption disabled.

    tests/netns.sh /usr/bin/python3 tests/libtorrent/mse_interop.py [path/to/webtorrent] [SIZE_MIB]

SIZE_MIB (default 8) is the file size; a large one (e.g. 512 with a release binary) makes the
printed rates a measure of the encryption's cost. Exits non-zero on failure.
"""

import os
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
LT_PORT = 7890
OUR_PORT = 6995
PIECE = 256 * 1024
TIMEOUT = 60 + SIZE_MIB // 4


def log(*a):
    print("[mse-interop]", *a, flush=True)


def settings(ip, out_policy, in_policy, level):
    return {
        "listen_interfaces": f"{ip}:{LT_PORT}",
        "outgoing_interfaces": ip,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "out_enc_policy": int(out_policy),
        "in_enc_policy": int(in_policy),
        "allowed_enc_level": int(level),
        "prefer_rc4": level == lt.enc_level.pe_rc4,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": lt.alert.category_t.error_notification,
    }


FORCED_RC4 = (lt.enc_policy.pe_forced, lt.enc_policy.pe_forced, lt.enc_level.pe_rc4)
FORCED_PLAINTEXT = (lt.enc_policy.pe_forced, lt.enc_policy.pe_forced, lt.enc_level.pe_plaintext)
DISABLED = (lt.enc_policy.pe_disabled, lt.enc_policy.pe_disabled, lt.enc_level.pe_both)


def protection(flags):
    if flags & lt.peer_info.rc4_encrypted:
        return "rc4"
    if flags & lt.peer_info.plaintext_encrypted:
        return "plaintext"
    return "plain"


def lt_seeds(work, src, name, policy):
    """A libtorrent session seeding `src/name`; returns (session, .torrent path)."""
    ses = lt.session(settings("127.0.0.2", *policy))
    fs = lt.file_storage()
    lt.add_files(fs, os.path.join(src, name))
    ct = lt.create_torrent(fs, PIECE, flags=lt.create_torrent.v1_only)
    lt.set_piece_hashes(ct, src)
    data = lt.bencode(ct.generate())
    tpath = os.path.join(work, f"lt-{len(os.listdir(work))}.torrent")
    with open(tpath, "wb") as f:
        f.write(data)
    ses.add_torrent({"ti": lt.torrent_info(tpath), "save_path": src,
                     "flags": lt.torrent_flags.seed_mode})
    return ses, tpath


def our_download(work, tpath, policy, want_method):
    out = tempfile.mkdtemp(dir=work, prefix="ours-out-")
    t0 = time.time()
    r = subprocess.run(
        [BIN, "download", tpath, "-o", out, "--peer", f"127.0.0.2:{LT_PORT}", "--no-dht",
         "--encryption", policy, "--timeout", str(TIMEOUT), "--quiet"],
        capture_output=True, text=True, timeout=TIMEOUT + 30,
        env={**os.environ, "RUST_LOG": "webtorrent=info,webtorrent::crypt=debug"})
    took = time.time() - t0
    r.stderr = plain_log(r.stderr)
    if r.returncode != 0:
        log("stderr:", r.stderr[-3000:])
        sys.exit(f"our download (--encryption {policy}) failed (exit {r.returncode})")
    if want_method and f"method={want_method}" not in r.stderr:
        log("stderr:", r.stderr[-3000:])
        sys.exit(f"our download did not log an encrypted connection with method={want_method}")
    return out, took, r.stderr


def our_seed(work, path, policy):
    """Our seeder; returns (process, .torrent path, log file)."""
    tpath = os.path.join(work, f"ours-{policy}-{time.time_ns()}.torrent")
    logf = open(os.path.join(work, f"seed-{policy}-{time.time_ns()}.log"), "w+")
    p = subprocess.Popen(
        [BIN, "seed", path, "--no-dht", "--port", str(OUR_PORT), "--encryption", policy,
         "--piece-length", str(PIECE), "--torrent-out", tpath, "--quiet"],
        stdout=subprocess.PIPE, stderr=logf, text=True,
        env={**os.environ,
             "RUST_LOG": "webtorrent=info,webtorrent::crypt=debug,webtorrent::client=debug"})
    line = p.stdout.readline().strip()
    if not line.startswith("magnet:"):
        p.kill()
        logf.seek(0)
        sys.exit(f"our seeder printed no magnet ({line!r}): {logf.read()[-2000:]}")
    return p, tpath, logf


def stop(p):
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()


def lt_download(work, tpath, policy, timeout=TIMEOUT):
    """A libtorrent session downloading from our seeder; returns (folder, seconds, protection
    seen, handle status) or (None, ...) when it got nothing within `timeout`."""
    ses = lt.session(settings("127.0.0.3", *policy))
    dl = tempfile.mkdtemp(dir=work, prefix="lt-out-")
    h = ses.add_torrent({"ti": lt.torrent_info(tpath), "save_path": dl})
    h.connect_peer(("127.0.0.1", OUR_PORT))
    seen = set()
    t0 = time.time()
    done = False
    while time.time() - t0 < timeout:
        for p in h.get_peer_info():
            # Only connections past their handshakes say how they are protected.
            if not p.flags & (lt.peer_info.connecting | lt.peer_info.handshake):
                seen.add(protection(p.flags))
        if h.status().is_seeding:
            done = True
            break
        time.sleep(0.05)
    took = time.time() - t0
    st = h.status()
    ses.remove_torrent(h)
    del ses
    return (dl if done else None), took, seen, st


def main():
    run_in_temp(BIN, "wt-mse-", run)


def run(work):
    size = SIZE_MIB * (1 << 20) + 12345
    src = os.path.join(work, "src")
    os.makedirs(src)
    name = "encrypted.bin"
    f = os.path.join(src, name)
    make_file(f, size)
    want = sha256(f)

    # 1. libtorrent (forced RC4) seeds, ours (require) downloads.
    ses, tpath = lt_seeds(work, src, name, FORCED_RC4)
    out, took, _ = our_download(work, tpath, "require", "Rc4")
    assert sha256(os.path.join(out, name)) == want, "our copy differs"
    log(f"ours (require) <- libtorrent (forced RC4): SHA-256 matches, {took:.1f} s, {rate(size, took)}")
    shutil.rmtree(out)
    del ses

    # 4. libtorrent with encryption disabled seeds, ours (prefer) falls back to plain.
    ses, tpath = lt_seeds(work, src, name, DISABLED)
    out, took, err = our_download(work, tpath, "prefer", None)
    assert sha256(os.path.join(out, name)) == want, "our copy differs"
    if "retrying plain" not in err:
        log("stderr:", err[-3000:])
        sys.exit("our download did not say it retried plain")
    log(f"ours (prefer) <- libtorrent (disabled): fell back to plain, SHA-256 matches, {took:.1f} s")
    shutil.rmtree(out)
    del ses

    # 2. ours (require) seeds, libtorrent (forced RC4) downloads; 5. refuses a plain one.
    seeder, tpath, logf = our_seed(work, f, "require")
    try:
        dl, took, seen, st = lt_download(work, tpath, FORCED_RC4)
        if dl is None:
            sys.exit(f"libtorrent (forced RC4) did not download from us: {st.state}, "
                     f"{st.num_peers} peers, progress {st.progress:.2f}")
        assert sha256(os.path.join(dl, name)) == want, "libtorrent's copy differs"
        if seen != {"rc4"}:
            sys.exit(f"libtorrent saw our connection as {seen}, not rc4")
        log(f"libtorrent (forced RC4) <- ours (require): RC4 by libtorrent's flags, SHA-256 matches, "
            f"{took:.1f} s, {rate(size, took)}")
        shutil.rmtree(dl)
        dl, took, seen, st = lt_download(work, tpath, DISABLED, timeout=5)
        if dl is not None or st.total_wanted_done != 0:
            sys.exit("a plain libtorrent got data from our seeder with --encryption require")
        logf.seek(0)
        if "encryption is required" not in plain_log(logf.read()):
            sys.exit("our seeder did not log why it refused the plain connection")
        log("ours (require) refused libtorrent (disabled): nothing transferred")
    finally:
        stop(seeder)

    # 3. ours (prefer) seeds, libtorrent negotiates plaintext after the encrypted handshake.
    seeder, tpath, logf = our_seed(work, f, "prefer")
    try:
        dl, took, seen, st = lt_download(work, tpath, FORCED_PLAINTEXT)
        if dl is None:
            sys.exit(f"libtorrent (plaintext method) did not download from us: {st.state}, "
                     f"{st.num_peers} peers, progress {st.progress:.2f}")
        assert sha256(os.path.join(dl, name)) == want, "libtorrent's copy differs"
        if seen != {"plaintext"}:
            sys.exit(f"libtorrent saw our connection as {seen}, not plaintext")
        logf.seek(0)
        if "method=Plaintext" not in plain_log(logf.read()):
            sys.exit("our seeder did not log the plaintext method")
        log(f"libtorrent (forced, plaintext method) <- ours (prefer): SHA-256 matches, "
            f"{took:.1f} s, {rate(size, took)}")
        shutil.rmtree(dl)
        # The same seeder to a libtorrent without encryption, for the rates' sake.
        dl, took, seen, st = lt_download(work, tpath, DISABLED)
        if dl is None or seen != {"plain"}:
            sys.exit(f"a plain libtorrent did not download from our prefer seeder ({seen})")
        assert sha256(os.path.join(dl, name)) == want, "libtorrent's copy differs"
        log(f"libtorrent (disabled) <- ours (prefer): plain, SHA-256 matches, {took:.1f} s, "
            f"{rate(size, took)}")
    finally:
        stop(seeder)


if __name__ == "__main__":
    main()
