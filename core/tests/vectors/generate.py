#!/usr/bin/env python3
"""Regenerate the TorrentCreator test vectors in this folder.

Normally run through generate.sh, which installs the tools first. This script:
  1. writes every case's content into SCRATCH/content/<case>/ using the
     documented formula (see CONTENT_FORMULA),
  2. runs each tool (create-torrent, mktorrent, torf, transmission-create) on it,
  3. decodes every .torrent, takes the raw bencoded `info` value, SHA-1s it,
     and compares the info dicts byte-for-byte against create-torrent's,
  4. writes vectors.json and <case>.<tool>.torrent files into this folder.

Usage: generate.py --scratch /tmp/vecgen [--out DIR]
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))

ANNOUNCE = 'http://127.0.0.1:8000/announce'
COMMENT = 'webtorrent-rs test vector'
CREATED_BY = 'webtorrent-rs test vectors'
# create-torrent always writes "creation date" (it cannot be omitted), so it is
# pinned to this value. mktorrent (-d) and torf write none. transmission-create
# always writes the current time and has no option to change it, so it runs
# under faketime at CREATION_DATE.
CREATION_DATE = 1700000000
FAKETIME = '2023-11-14 22:13:20'  # = CREATION_DATE in UTC

CONTENT_FORMULA = (
    'For a file entry with a "seed" k and a "length" n, the file consists of n bytes; '
    'the byte at 0-based offset i within that file (0 <= i < n; i restarts at 0 for '
    'every file, it is not the offset within the torrent) is '
    '((i * 7 + k * 13 + (i >> 8)) mod 251), computed on unbounded non-negative '
    'integers (u64 is enough for every length here), where (i >> 8) is floor(i / 256). '
    'The result is always < 251 and is stored as one u8. '
    'A file entry with "literal" instead of "seed" has exactly the UTF-8 bytes of that string.'
)

TOOLS = ['create-torrent', 'mktorrent', 'torf', 'transmission-create']
REFERENCE_TOOL = 'create-torrent'


def content_bytes(length, seed):
    """The documented content formula. Keep in sync with CONTENT_FORMULA."""
    return bytes(((i * 7 + seed * 13 + (i >> 8)) % 251) for i in range(length))


def f(path, length=None, seed=None, literal=None):
    """A file entry. path is a list of components below the torrent root."""
    if literal is not None:
        return {'path': path, 'length': len(literal.encode('utf-8')), 'literal': literal}
    return {'path': path, 'length': length, 'seed': seed}


UTF8_NAME = unicodedata.normalize('NFC', 'résumé ✓.bin')

# "single": True -> single-file torrent, the file's path is [name].
# For multi-file cases the file order below is the order the tools put in the
# info dict (checked by this script: generation fails if create-torrent differs).
CASES = [
    dict(case='hello_16k', single=True, name='hello.txt', piece_length=16384, private=False,
         files=[f(['hello.txt'], literal='Hello')],
         description='5-byte literal file "Hello", piece length 16 KiB (one partial piece)'),
    dict(case='hello_32k', single=True, name='hello.txt', piece_length=32768, private=False,
         files=[f(['hello.txt'], literal='Hello')],
         description='5-byte literal file "Hello", piece length 32 KiB (one partial piece)'),
    dict(case='one_piece', single=True, name='one_piece.bin', piece_length=16384, private=False,
         files=[f(['one_piece.bin'], 16384, 1)],
         description='file length exactly one piece (16384)'),
    dict(case='exact_multiple', single=True, name='exact_multiple.bin', piece_length=32768,
         private=False, files=[f(['exact_multiple.bin'], 5 * 32768, 2)],
         description='file length exactly 5 pieces of 32 KiB, no partial last piece'),
    dict(case='partial_last', single=True, name='partial_last.bin', piece_length=65536,
         private=False, files=[f(['partial_last.bin'], 1000003, 3)],
         description='1_000_003 bytes, 64 KiB pieces, last piece partial (16 pieces, last 16963 bytes)'),
    dict(case='partial_last_private', single=True, name='partial_last.bin', piece_length=65536,
         private=True, files=[f(['partial_last.bin'], 1000003, 3)],
         description='same name and content as partial_last but with info.private = 1'),
    dict(case='utf8_name', single=True, name=UTF8_NAME, piece_length=32768, private=False,
         files=[f([UTF8_NAME], 70000, 4)],
         description='non-ASCII UTF-8 (NFC) file name, 70000 bytes, 32 KiB pieces'),
    dict(case='multi_album', single=False, name='album', piece_length=32768, private=False,
         files=[f(['a.txt'], 1000, 5), f(['sub', 'b.bin'], 40000, 6),
                f(['sub', 'deeper', 'c.dat'], 100000, 7), f(['z.txt'], 0, 8)],
         description='multi-file torrent with nested directories and a zero-length last file'),
    dict(case='multi_boundary', single=False, name='boundary', piece_length=32768, private=False,
         files=[f(['first.bin'], 32768, 9), f(['second.bin'], 65536, 10),
                f(['third.bin'], 12345, 11)],
         description='multi-file: first.bin ends exactly at the end of piece 0, second.bin '
                     'exactly at the end of piece 2; third.bin fills a partial piece 3'),
    dict(case='auto_3m', single=True, name='auto.bin', piece_length=None, private=False,
         files=[f(['auto.bin'], 3000000, 12)],
         description='3_000_000 bytes, no piece length given: each tool chooses its own'),
    dict(case='order_quirk', single=False, name='order', piece_length=32768, private=False,
         informational=True,
         files=[f(['B.txt'], 100, 13), f(['a.txt'], 200, 14), f(['sub', 'x.bin'], 300, 15),
                f(['sub.txt'], 400, 16)],
         description='INFORMATIONAL: shows how each tool orders files when walking a directory '
                     '(upper/lower case, and "sub/" vs "sub.txt"); tools disagree here'),
]

PIECE_LENGTH_SIZES = [
    (0, '0'), (1, '1'), (1000, '1000'), (2**20, '1 MiB'), (10 * 2**20, '10 MiB'),
    (100 * 2**20, '100 MiB'), (350 * 2**20, '350 MiB'), (2**30, '1 GiB'), (4 * 2**30, '4 GiB'),
    (16 * 2**30, '16 GiB'), (100 * 2**30, '100 GiB'), (2**40, '1 TiB'),
]


def extra_piece_length_sizes():
    """Extra sizes: the auto case, the rounding boundaries, and the 32-bit overflow."""
    out = [(3000000, 'auto_3m case')]
    # piece length jumps from 2^(e-1) to 2^e when size/1024 reaches 2^(e-0.5)
    for e in (15, 16, 20, 22, 23):
        b = 1024 * 2 ** (e - 0.5)
        lo, hi = math.floor(b), math.ceil(b)
        out.append((lo, f'just below the 2^{e} boundary'))
        out.append((hi, f'just above the 2^{e} boundary'))
    b = 1024 * 2 ** 30.5
    out.append((math.floor(b), 'just below the 1<<31 overflow'))
    out.append((math.ceil(b), 'just above the 1<<31 overflow (JS 32-bit shift)'))
    out.append((2 * 2**40, '2 TiB'))
    out.append((4 * 2**40, '4 TiB'))
    return out


# ---------------------------------------------------------------- bencode ---

def bdecode(data):
    """Decode bencode. Returns (value, info_raw) where info_raw is the exact byte
    span of the top-level 'info' value. Also checks dict keys are sorted."""
    info_span = {}

    def dec(i, depth):
        c = data[i:i + 1]
        if c == b'i':
            j = data.index(b'e', i)
            return int(data[i + 1:j]), j + 1
        if c == b'l':
            i += 1
            out = []
            while data[i:i + 1] != b'e':
                v, i = dec(i, depth + 1)
                out.append(v)
            return out, i + 1
        if c == b'd':
            i += 1
            out = {}
            keys = []
            while data[i:i + 1] != b'e':
                k, i = dec(i, depth + 1)
                start = i
                v, i = dec(i, depth + 1)
                if depth == 0 and k == b'info':
                    info_span['raw'] = data[start:i]
                out[k] = v
                keys.append(k)
            if keys != sorted(keys):
                raise ValueError(f'unsorted dict keys: {keys}')
            return out, i + 1
        if c.isdigit():
            j = data.index(b':', i)
            n = int(data[i:j])
            return data[j + 1:j + 1 + n], j + 1 + n
        raise ValueError(f'bad bencode at {i}')

    value, end = dec(0, 0)
    if end != len(data):
        raise ValueError('trailing data')
    return value, info_span['raw']


def bencode(v):
    if isinstance(v, int):
        return b'i%de' % v
    if isinstance(v, bytes):
        return b'%d:%s' % (len(v), v)
    if isinstance(v, list):
        return b'l' + b''.join(bencode(x) for x in v) + b'e'
    if isinstance(v, dict):
        return b'd' + b''.join(bencode(k) + bencode(v[k]) for k in sorted(v)) + b'e'
    raise TypeError(type(v))


# ------------------------------------------------------------------ tools ---

def run(cmd, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
    return p.returncode, p.stdout.decode('utf-8', 'replace')


def tool_versions(scratch):
    v = {}
    _, out = run(['mktorrent', '-h'])
    v['mktorrent'] = out.splitlines()[0].strip()
    _, out = run(['transmission-create', '-V'])
    v['transmission-create'] = out.strip().splitlines()[-1]
    for pkg in ('mktorrent', 'transmission-cli', 'faketime'):
        rc, out = run(['dpkg-query', '-W', '-f=${Version}', pkg])
        v[f'debian package {pkg}'] = out.strip() if rc == 0 else 'not installed'
    return v


def input_path(scratch, case):
    base = os.path.join(scratch, 'content', case['case'])
    return os.path.join(base, case['name'])


def write_content(scratch, case):
    base = os.path.join(scratch, 'content', case['case'])
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    root = input_path(scratch, case)
    for fe in case['files']:
        if case['single']:
            p = root
        else:
            p = os.path.join(root, *fe['path'])
        os.makedirs(os.path.dirname(p), exist_ok=True)
        data = fe['literal'].encode('utf-8') if 'literal' in fe else content_bytes(fe['length'], fe['seed'])
        assert len(data) == fe['length']
        with open(p, 'wb') as fh:
            fh.write(data)


def mktorrent_job(job):
    pl = job['pieceLength']
    cmd = ['mktorrent', '-d', '-t', '1', '-a', ANNOUNCE, '-c', COMMENT, '-o', job['out']]
    if pl is not None:
        e = pl.bit_length() - 1
        if 1 << e != pl or not 15 <= e <= 28:
            return {'skipped': f'mktorrent 1.1 only accepts piece length 2^15..2^28 (-l 15..28); '
                               f'{pl} is not possible'}
        cmd += ['-l', str(e)]
    if job['private']:
        cmd.append('-p')
    cmd.append(job['input'])
    rc, out = run(cmd)
    return {'ok': True} if rc == 0 and os.path.exists(job['out']) else {'error': out}


def transmission_job(job):
    pl = job['pieceLength']
    cmd = ['transmission-create', '-t', ANNOUNCE, '-c', COMMENT, '-o', job['out']]
    # transmission-create always writes the current time as "creation date";
    # run it under libfaketime (Debian `faketime`) so its output is reproducible.
    if shutil.which('faketime'):
        cmd = ['faketime', '-f', f'@{FAKETIME}'] + cmd
    if pl is not None:
        if pl % 1024:
            return {'skipped': 'transmission-create takes piece size in KiB'}
        cmd += ['-s', str(pl // 1024)]
    if job['private']:
        cmd.append('-p')
    cmd.append(job['input'])
    rc, out = run(cmd, env=dict(os.environ, TZ='UTC'))
    # transmission-create exits 0 even when it fails: check the output exists.
    return {'ok': True} if rc == 0 and os.path.exists(job['out']) else {'error': out}


def json_job_tool(cmd, jobs, scratch, name):
    jobs_path = os.path.join(scratch, f'{name}-jobs.json')
    res_path = os.path.join(scratch, f'{name}-result.json')
    with open(jobs_path, 'w', encoding='utf-8') as fh:
        json.dump(jobs, fh, ensure_ascii=False, indent=1)
    rc, out = run(cmd + [jobs_path, res_path])
    if rc != 0:
        sys.exit(f'{name} driver failed:\n{out}')
    with open(res_path, encoding='utf-8') as fh:
        return json.load(fh)


# ---------------------------------------------------------------- compare ---

def describe(meta):
    info = meta[b'info']
    if b'files' in info:
        files = [[p.decode('utf-8') for p in fe[b'path']] for fe in info[b'files']]
        lengths = [fe[b'length'] for fe in info[b'files']]
        file_keys = sorted({k.decode() for fe in info[b'files'] for k in fe})
    else:
        files = [[info[b'name'].decode('utf-8')]]
        lengths = [info[b'length']]
        file_keys = None
    return {
        'info_keys': sorted(k.decode() for k in info),
        'file_entry_keys': file_keys,
        'top_level_keys': sorted(k.decode() for k in meta),
        'piece_length': info[b'piece length'],
        'private': info.get(b'private'),
        'file_order': files,
        'file_lengths': lengths,
        'num_pieces': len(info[b'pieces']) // 20,
    }


def diff_reason(ref, other):
    """Human-readable reason why two info dicts (decoded) differ."""
    reasons = []
    rk, ok = set(ref), set(other)
    if ok - rk:
        reasons.append('extra info keys ' + ', '.join(
            f'{k.decode()}={other[k]!r}' for k in sorted(ok - rk)))
    if rk - ok:
        reasons.append('missing info keys ' + ', '.join(k.decode() for k in sorted(rk - ok)))
    for k in sorted(rk & ok):
        if ref[k] != other[k]:
            if k == b'files':
                rp = [(fe[b'path'], fe[b'length']) for fe in ref[k]]
                op = [(fe[b'path'], fe[b'length']) for fe in other[k]]
                if sorted(rp) == sorted(op):
                    reasons.append('same files in a different order')
                else:
                    fmt = lambda p: '/'.join(x.decode('utf-8') for x in p[0]) + f' ({p[1]} bytes)'
                    missing = [fmt(p) for p in rp if p not in op]
                    extra = [fmt(p) for p in op if p not in rp]
                    reasons.append('different file list: '
                                   + ', '.join(['left out ' + m for m in missing]
                                               + ['added ' + e for e in extra]))
            elif k == b'pieces':
                if ref[b'piece length'] == other[b'piece length']:
                    reasons.append('different piece hashes')
            else:
                reasons.append(f'{k.decode()}: {other[k]!r} instead of {ref[k]!r}')
    return '; '.join(reasons) or 'identical decoded dicts but different bytes'


# ------------------------------------------------- independent re-derivation ---

def info_hash_from_spec(entry):
    """Rebuild the info dict from a vectors.json entry alone (formula + metadata),
    the way a BEP 3 creator must, and return its SHA-1. Used as a self-check that
    the documented formula and fields fully determine the expected hash."""
    pl = entry['piece_length'] or entry['auto_piece_length']
    blobs = []
    for fe in entry['files']:
        if 'literal' in fe:
            blobs.append(fe['literal'].encode('utf-8'))
        else:
            blobs.append(content_bytes(fe['length'], fe['seed']))
    stream = b''.join(blobs)
    pieces = b''.join(hashlib.sha1(stream[o:o + pl]).digest() for o in range(0, len(stream), pl))
    info = {b'name': entry['name'].encode('utf-8'), b'piece length': pl, b'pieces': pieces}
    if entry['single_file']:
        info[b'length'] = entry['files'][0]['length']
    else:
        info[b'files'] = [{b'length': fe['length'],
                           b'path': [p.encode('utf-8') for p in fe['path']]}
                          for fe in entry['files']]
    if entry['private']:
        info[b'private'] = 1
    return hashlib.sha1(bencode(info)).hexdigest()


# ------------------------------------------------------------------- main ---

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--scratch', required=True)
    ap.add_argument('--out', default=HERE)
    ap.add_argument('--node-dir', help='dir with node_modules (default SCRATCH/npm)')
    ap.add_argument('--torf-python', help='python with torf (default SCRATCH/venv/bin/python)')
    args = ap.parse_args()
    scratch = os.path.abspath(args.scratch)
    out_dir = os.path.abspath(args.out)
    node_dir = args.node_dir or os.path.join(scratch, 'npm')
    torf_py = args.torf_python or os.path.join(scratch, 'venv', 'bin', 'python')
    tdir = os.path.join(scratch, 'torrents')
    shutil.rmtree(tdir, ignore_errors=True)
    os.makedirs(tdir)

    for case in CASES:
        write_content(scratch, case)

    # One job per (case, tool, variant). Variants: "" = as the case says;
    # "-auto" is the tool's own automatic piece length for the auto case.
    jobs = {t: [] for t in TOOLS}
    for case in CASES:
        for tool in TOOLS:
            jobs[tool].append({
                'id': case['case'], 'case': case['case'], 'tool': tool,
                'input': input_path(scratch, case),
                'out': os.path.join(tdir, f"{case['case']}.{tool}.torrent"),
                'pieceLength': case['piece_length'],
                'private': True if case['private'] else None,
            })
    # Also record what create-torrent does with an explicit private:false.
    jobs['create-torrent'].append({
        'id': 'partial_last#private-false', 'case': 'partial_last', 'tool': 'create-torrent',
        'input': input_path(scratch, CASES[4]),
        'out': os.path.join(tdir, 'partial_last.create-torrent-private-false.torrent'),
        'pieceLength': 65536, 'private': False,
    })

    common = {'announce': ANNOUNCE, 'comment': COMMENT, 'createdBy': CREATED_BY,
              'creationDate': CREATION_DATE}
    sizes = [(s, label, False) for s, label in PIECE_LENGTH_SIZES] + \
            [(s, label, True) for s, label in extra_piece_length_sizes()]

    shutil.copy(os.path.join(HERE, 'tools', 'create_torrent.mjs'), node_dir)
    ct = json_job_tool(['node', os.path.join(node_dir, 'create_torrent.mjs')],
                       dict(common, torrents=jobs['create-torrent'],
                            piece_length_sizes=[s for s, _, _ in sizes]),
                       scratch, 'create-torrent')
    tf = json_job_tool([torf_py, os.path.join(HERE, 'tools', 'torf_create.py')],
                       dict(common, torrents=jobs['torf']), scratch, 'torf')
    status = {'create-torrent': ct['torrents'], 'torf': tf['torrents'],
              'mktorrent': {j['id']: mktorrent_job(j) for j in jobs['mktorrent']},
              'transmission-create': {j['id']: transmission_job(j)
                                      for j in jobs['transmission-create']}}
    versions = dict(ct['versions'])
    versions.update(tf['versions'])
    versions.update(tool_versions(scratch))
    versions['python'] = sys.version.split()[0]

    # Remove old outputs, then copy the new torrents in.
    for name in os.listdir(out_dir):
        if name.endswith('.torrent'):
            os.remove(os.path.join(out_dir, name))

    results = []
    failures = []
    for idx, case in enumerate(CASES):
        cid = case['case']
        decoded = {}
        torrent_files = {}
        skipped = {}
        for tool in TOOLS:
            st = status[tool].get(cid)
            if st is None or 'skipped' in st:
                skipped[tool] = st['skipped'] if st else 'not run'
                continue
            if 'error' in st:
                skipped[tool] = 'tool failed: ' + st['error'].strip()[-300:]
                continue
            path = os.path.join(tdir, f'{cid}.{tool}.torrent')
            data = open(path, 'rb').read()
            meta, info_raw = bdecode(data)
            if bencode(meta[b'info']) != info_raw:
                failures.append(f'{cid}/{tool}: info dict is not canonical bencode')
            decoded[tool] = (meta, info_raw, hashlib.sha1(info_raw).hexdigest())
            name = f'{cid}.{tool}.torrent'
            shutil.copyfile(path, os.path.join(out_dir, name))
            os.chmod(os.path.join(out_dir, name), 0o644)
            torrent_files[tool] = name

        ref_meta, ref_raw, ref_hash = decoded[REFERENCE_TOOL]
        ref_desc = describe(ref_meta)
        agree, others, per_tool = {}, {}, {}
        for tool, (meta, raw, h) in decoded.items():
            d = describe(meta)
            per_tool[tool] = {
                'info_hash': h, 'piece_length': d['piece_length'],
                'info_keys': d['info_keys'], 'file_order': d['file_order'],
                'file_lengths': d['file_lengths'],
                'top_level_keys': d['top_level_keys'],
            }
            if d['file_entry_keys'] is not None:
                per_tool[tool]['file_entry_keys'] = d['file_entry_keys']
            if raw == ref_raw:
                agree[tool] = h
            else:
                others[tool] = {'info_hash': h,
                                'reason': diff_reason(ref_meta[b'info'], meta[b'info'])}

        # The case's file list must be exactly what create-torrent put in info.
        want_order = [fe['path'] if not case['single'] else [case['name']] for fe in case['files']]
        want_len = [fe['length'] for fe in case['files']]
        if ref_desc['file_order'] != want_order or ref_desc['file_lengths'] != want_len:
            failures.append(f'{cid}: create-torrent file list {ref_desc["file_order"]} '
                            f'{ref_desc["file_lengths"]} != case {want_order} {want_len}')
        if case['piece_length'] is not None and ref_desc['piece_length'] != case['piece_length']:
            failures.append(f'{cid}: piece length mismatch')
        if bool(ref_desc['private']) != case['private']:
            failures.append(f'{cid}: private mismatch')
        if len(agree) < 2 and not case.get('informational'):
            failures.append(f'{cid}: fewer than two tools agree: {sorted(agree)}')

        total = sum(want_len)
        pl = ref_desc['piece_length']
        entry = {
            'case': cid,
            'description': case['description'],
            'name': case['name'],
            'piece_length': case['piece_length'],
            'private': case['private'],
            'files': [dict(fe) for fe in case['files']],
            'total_length': total,
            'num_pieces': ref_desc['num_pieces'],
            'expected_info_hash': ref_hash,
            'info_hash': agree,
            'tools_agree': len(agree) >= 2,
        }
        if case['single']:
            entry['single_file'] = True
        else:
            entry['single_file'] = False
        if case.get('informational'):
            entry['informational'] = True
        if case['piece_length'] is None:
            entry['auto_piece_length'] = pl
            entry['auto_piece_length_by_tool'] = {t: v['piece_length'] for t, v in per_tool.items()}
        entry['other_tools'] = others
        entry['skipped_tools'] = skipped
        entry['per_tool'] = per_tool
        entry['torrent_files'] = torrent_files
        if info_hash_from_spec(entry) != ref_hash:
            failures.append(f'{cid}: re-deriving the info dict from the JSON entry gives '
                            f'{info_hash_from_spec(entry)}, not {ref_hash}')
        assert entry['num_pieces'] == (math.ceil(total / pl) if total else 0), cid
        results.append(entry)

    # create-torrent with explicit private:false
    pf = status['create-torrent'].get('partial_last#private-false', {})
    quirks = {}
    if pf.get('ok'):
        path = os.path.join(tdir, 'partial_last.create-torrent-private-false.torrent')
        meta, raw = bdecode(open(path, 'rb').read())
        shutil.copyfile(path, os.path.join(out_dir, os.path.basename(path)))
        quirks['create_torrent_private_false'] = {
            'case': 'partial_last',
            'option': 'private: false',
            'info_keys': sorted(k.decode() for k in meta[b'info']),
            'private_value': meta[b'info'].get(b'private'),
            'info_hash': hashlib.sha1(raw).hexdigest(),
            'torrent_file': os.path.basename(path),
            'note': 'create-torrent writes private=0 into info when the option is given as '
                    'false, which changes the info hash; leave the option out for a public torrent',
        }

    table = []
    for (size, label, extra), row in zip(sizes, ct['piece_length_table']):
        assert row['size'] == size
        entry = {'size': size, 'label': label, 'piece_length': row['create_torrent'],
                 'piece_length_fn': row['piece_length_fn']}
        if extra:
            entry['extra'] = True
        table.append(entry)

    doc = {
        'description': 'TorrentCreator test vectors: info hashes of torrents made by independent '
                       'tools from deterministic content. Regenerate with generate.sh. '
                       '"expected_info_hash" is create-torrent\'s; "info_hash" lists every tool '
                       'whose bencoded info dict is byte-identical to create-torrent\'s; '
                       '"other_tools" lists tools whose info dict differs, with the reason.',
        'content_formula': CONTENT_FORMULA,
        'announce': ANNOUNCE,
        'comment': COMMENT,
        'created_by': CREATED_BY,
        'creation_date': CREATION_DATE,
        'creation_date_note': 'create-torrent always writes "creation date" (pinned to this value); '
                              'transmission-create too (run under faketime at this time); '
                              'mktorrent -d and torf write none.',
        'tool_versions': versions,
        'create_torrent_piece_length_note': (
            'piece_length = create-torrent automatic choice = min(piece_length_fn, 4194304); '
            'piece_length_fn = require("piece-length")(size) called directly. Rows with '
            '"extra" were added beyond the requested list.'),
        'create_torrent_piece_length': table,
        'quirks': quirks,
        'cases': results,
    }
    with open(os.path.join(out_dir, 'vectors.json'), 'w', encoding='utf-8') as fh:
        json.dump(doc, fh, ensure_ascii=False, indent=2)
        fh.write('\n')

    for r in results:
        print(f"{r['case']:22} {r['expected_info_hash']}  agree={sorted(r['info_hash'])}  "
              f"differ={sorted(r['other_tools'])}  skipped={sorted(r['skipped_tools'])}")
    if failures:
        print('FAILURES:\n  ' + '\n  '.join(failures))
        sys.exit(1)


if __name__ == '__main__':
    main()
