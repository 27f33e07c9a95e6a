//! Wire protocol throughput: decoding a stream of 16 KiB piece messages as a driver would
//! (64 KiB reads into the decoder's buffer), and encoding.

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use webtorrent_core::wire::{encode_piece_header, BlockRequest, Decoder, Message, BLOCK_LEN};

const STREAM_LEN: usize = 64 * 1024 * 1024;
const READ_LEN: usize = 64 * 1024;

fn piece_stream() -> (Vec<u8>, usize) {
    let block = Bytes::from((0..BLOCK_LEN).map(|i| i as u8).collect::<Vec<u8>>());
    let count = STREAM_LEN / BLOCK_LEN as usize;
    let mut out = BytesMut::with_capacity(count * (BLOCK_LEN as usize + 13));
    for i in 0..count as u32 {
        Message::Piece {
            index: i / 16,
            begin: (i % 16) * BLOCK_LEN,
            data: block.clone(),
        }
        .encode(&mut out);
    }
    (out.to_vec(), count)
}

fn decode_pieces(c: &mut Criterion) {
    let (stream, count) = piece_stream();
    let mut g = c.benchmark_group("wire_decode");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.sample_size(20);
    g.bench_function("pieces_16k_in_64k_reads", |b| {
        b.iter(|| {
            let mut d = Decoder::messages_only();
            let mut n = 0usize;
            let mut bytes = 0usize;
            for read in stream.chunks(READ_LEN) {
                // What a driver does with `read_buf`: reserve, then copy from the socket.
                let buf = d.buffer_mut();
                buf.reserve(READ_LEN);
                buf.put_slice(read);
                while let Some(m) = d.next_message().expect("valid stream") {
                    if let Message::Piece { data, .. } = &m {
                        bytes += data.len();
                    }
                    n += 1;
                    black_box(&m);
                }
            }
            assert_eq!(n, count);
            bytes
        })
    });

    // Small messages: many frames per read.
    let mut small = BytesMut::new();
    let mut msgs = 0u64;
    while small.len() < 4 * 1024 * 1024 {
        Message::Have { piece: msgs as u32 }.encode(&mut small);
        Message::Request(BlockRequest::new(msgs as u32, 0, BLOCK_LEN)).encode(&mut small);
        msgs += 2;
    }
    let small = small.to_vec();
    g.throughput(Throughput::Elements(msgs));
    g.bench_function("have_and_request_in_64k_reads", |b| {
        b.iter(|| {
            let mut d = Decoder::messages_only();
            let mut n = 0u64;
            for read in small.chunks(READ_LEN) {
                d.extend(read);
                while let Some(m) = d.next_message().expect("valid stream") {
                    n += 1;
                    black_box(&m);
                }
            }
            assert_eq!(n, msgs);
        })
    });
    g.finish();
}

fn encode_pieces(c: &mut Criterion) {
    let block = Bytes::from(vec![0xabu8; BLOCK_LEN as usize]);
    let count = 1024u32;
    let mut g = c.benchmark_group("wire_encode");
    g.throughput(Throughput::Bytes(
        u64::from(count) * (u64::from(BLOCK_LEN) + 13),
    ));
    g.bench_function("pieces_16k_copying", |b| {
        let mut out = BytesMut::with_capacity(count as usize * (BLOCK_LEN as usize + 13));
        b.iter(|| {
            out.clear();
            for i in 0..count {
                Message::Piece {
                    index: i,
                    begin: 0,
                    data: block.clone(),
                }
                .encode(&mut out);
            }
            black_box(out.len())
        })
    });
    g.throughput(Throughput::Elements(u64::from(count)));
    g.bench_function("pieces_16k_header_only", |b| {
        // The vectored path: only the 13-byte header is produced; the block is sent as is.
        b.iter(|| {
            let mut acc = 0u64;
            for i in 0..count {
                let h = encode_piece_header(black_box(i), 0, BLOCK_LEN);
                acc = acc.wrapping_add(u64::from(h[12]));
            }
            black_box(acc)
        })
    });
    g.bench_function("requests", |b| {
        let mut out = BytesMut::with_capacity(count as usize * 17);
        b.iter(|| {
            out.clear();
            for i in 0..count {
                Message::Request(BlockRequest::new(i, 0, BLOCK_LEN)).encode(&mut out);
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, decode_pieces, encode_pieces);
criterion_main!(benches);
