"""Driver for the PyPI `torf` package. Run with the scratch venv's python:
    python torf_create.py jobs.json result.json
jobs.json has the same shape as for create_torrent.mjs (only "torrents",
"announce", "comment", "createdBy" are used). torf writes no "creation date"
when creation_date=None, and no "private" key unless private is True.
"""
import json
import sys

import torf


def main():
    jobs_path, result_path = sys.argv[1:3]
    with open(jobs_path, encoding='utf-8') as f:
        jobs = json.load(f)
    result = {'versions': {'torf': torf.__version__}, 'torrents': {}}
    for job in jobs['torrents']:
        try:
            t = torf.Torrent(
                path=job['input'],
                trackers=[jobs['announce']],
                comment=jobs['comment'],
                created_by=jobs['createdBy'],
                creation_date=None,
                private=True if job['private'] else None,
            )
            if job['pieceLength'] is not None:
                t.piece_size = job['pieceLength']
            t.generate(threads=1)
            t.write(job['out'], overwrite=True)
            result['torrents'][job['id']] = {'ok': True}
        except Exception as e:  # record and continue with the other jobs
            result['torrents'][job['id']] = {'error': f'{type(e).__name__}: {e}'}
    with open(result_path, 'w', encoding='utf-8') as f:
        json.dump(result, f, indent=2)


if __name__ == '__main__':
    main()
