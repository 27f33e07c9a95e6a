use super::*;
use crate::id::Id20;
use proptest::prelude::*;

fn entropy(n: u8) -> [u8; 32] {
    let mut e = [0u8; 32];
    for (i, b) in e.iter_mut().enumerate() {
        *b = n.wrapping_mul(31).wrapping_add(i as u8).wrapping_mul(7) ^ 0x5a;
    }
    e
}

fn torrent(n: u8) -> InfoHash {
    Id20([n; 20])
}

/// A responder lookup over a few torrents.
fn lookup(have: &[InfoHash]) -> impl Fn(&[u8; 20]) -> Option<InfoHash> + '_ {
    move |req2| have.iter().copied().find(|h| req2_hash(h) == *req2)
}

/// Runs a handshake to its end, delivering `chunk` bytes at a time, with `after_a` and
/// `after_b` sent by each side as soon as it is established.
fn run(
    mut a: Handshake,
    mut b: Handshake,
    have: &[InfoHash],
    chunk: usize,
) -> Result<(Established, Established), MseError> {
    for _ in 0..10_000 {
        if a.is_done() && b.is_done() {
            break;
        }
        let mut moved = false;
        if let Some(x) = a.poll_transmit() {
            moved = true;
            for c in x.chunks(chunk) {
                b.handle_data(c, lookup(have))?;
            }
        }
        if let Some(x) = b.poll_transmit() {
            moved = true;
            for c in x.chunks(chunk) {
                a.handle_data(c, lookup(have))?;
            }
        }
        if !moved {
            break;
        }
    }
    Ok((
        a.into_established().expect("initiator established"),
        b.into_established().expect("responder established"),
    ))
}

/// Steps 1 to 3: the initiator's key, the responder's key, the initiator's request.
fn three_steps(a: &mut Handshake, b: &mut Handshake, have: &[InfoHash]) {
    b.handle_data(&a.poll_transmit().unwrap(), lookup(have))
        .unwrap();
    a.handle_data(&b.poll_transmit().unwrap(), lookup(have))
        .unwrap();
    b.handle_data(&a.poll_transmit().unwrap(), lookup(have))
        .unwrap();
}

fn exchange(a: &mut Established, b: &mut Established, data: &[u8]) -> Vec<u8> {
    let mut wire = data.to_vec();
    if let Some((_, w)) = &mut a.ciphers {
        w.apply(&mut wire);
    }
    if a.method == Method::Rc4 && !data.is_empty() {
        assert_ne!(wire, data, "RC4 leaves no plaintext on the wire");
    }
    if let Some((r, _)) = &mut b.ciphers {
        r.apply(&mut wire);
    }
    wire
}

#[test]
fn both_sides_agree_on_torrent_method_and_stream() {
    let have = [torrent(1), torrent(2), torrent(3)];
    let cases = [
        (Methods::PREFER_RC4, Methods::PREFER_RC4, Method::Rc4),
        (
            Methods::PREFER_RC4,
            Methods::PREFER_PLAINTEXT,
            Method::Plaintext,
        ),
        (Methods::PREFER_PLAINTEXT, Methods::PREFER_RC4, Method::Rc4),
        (Methods::RC4_ONLY, Methods::PREFER_PLAINTEXT, Method::Rc4),
        (Methods::PREFER_RC4, Methods::RC4_ONLY, Method::Rc4),
    ];
    for (i, (ma, mb, want)) in cases.into_iter().enumerate() {
        for chunk in [1, 7, 100, 100_000] {
            let seed = (i * 10 + chunk % 7) as u8;
            let a = Handshake::initiator(torrent(2), ma, b"", entropy(seed));
            let b = Handshake::responder(mb, entropy(seed.wrapping_add(100)));
            let (mut ea, mut eb) = run(a, b, &have, chunk).unwrap();
            assert_eq!(ea.info_hash, torrent(2));
            assert_eq!(eb.info_hash, torrent(2));
            assert_eq!((ea.method, eb.method), (want, want), "case {i}");
            assert_eq!(ea.ciphers.is_some(), want == Method::Rc4);
            assert!(ea.received.is_empty() && eb.received.is_empty());
            // The stream continues in both directions, across many calls.
            for n in 0..20u8 {
                let msg: Vec<u8> = (0..(n as usize * 37)).map(|x| x as u8 ^ n).collect();
                assert_eq!(exchange(&mut ea, &mut eb, &msg), msg);
                assert_eq!(exchange(&mut eb, &mut ea, &msg), msg);
            }
        }
    }
}

#[test]
fn initial_payload_and_early_payload_arrive_decrypted() {
    let have = [torrent(9)];
    for methods in [Methods::PREFER_RC4, Methods::PREFER_PLAINTEXT] {
        let ia = b"\x13BitTorrent protocol-and-the-rest";
        let mut a = Handshake::initiator(torrent(9), methods, ia, entropy(1));
        let mut b = Handshake::responder(methods, entropy(2));
        // Steps 1 to 3, the responder's answer arrives with payload behind it.
        three_steps(&mut a, &mut b, &have);
        assert!(b.is_done());
        let step4 = b.poll_transmit().unwrap();
        let mut eb = b.into_established().unwrap();
        assert_eq!(eb.received, ia);
        let mut payload = b"hello from B".to_vec();
        if let Some((_, w)) = &mut eb.ciphers {
            w.apply(&mut payload);
        }
        let mut wire = step4;
        wire.extend_from_slice(&payload);
        a.handle_data(&wire, lookup(&have)).unwrap();
        assert!(a.is_done());
        assert_eq!(a.handle_data(b"x", lookup(&have)), Err(MseError::Finished));
        let ea = a.into_established().unwrap();
        assert_eq!(ea.received, b"hello from B");
    }
}

#[test]
fn refusals() {
    let have = [torrent(1)];
    // A torrent the responder does not have.
    let a = Handshake::initiator(torrent(5), Methods::PREFER_RC4, b"", entropy(3));
    let b = Handshake::responder(Methods::PREFER_RC4, entropy(4));
    assert_eq!(run(a, b, &have, 50).unwrap_err(), MseError::UnknownTorrent);

    // No common method.
    let plain_only = Methods {
        plaintext: true,
        rc4: false,
        prefer: Method::Plaintext,
    };
    let a = Handshake::initiator(torrent(1), plain_only, b"", entropy(5));
    let b = Handshake::responder(Methods::RC4_ONLY, entropy(6));
    assert!(matches!(
        run(a, b, &have, 50).unwrap_err(),
        MseError::NoCommonMethod {
            provided: 1,
            allowed: 2
        }
    ));

    // Garbage after a valid public key never synchronises, and the window is bounded.
    let mut b = Handshake::responder(Methods::PREFER_RC4, entropy(7));
    let a = Handshake::initiator(torrent(1), Methods::PREFER_RC4, b"", entropy(8));
    let mut ya = a.key.public_key().to_vec();
    ya.extend(std::iter::repeat_n(0xAB, MAX_PAD + 19));
    b.handle_data(&ya, lookup(&have)).unwrap();
    assert_eq!(
        b.handle_data(&[0xAB], lookup(&have)),
        Err(MseError::NoSync("SHA1(req1, S)"))
    );
    assert!(b.handle_data(&[0], lookup(&have)).is_err());

    // Trivial public keys.
    let mut b = Handshake::responder(Methods::PREFER_RC4, entropy(9));
    assert_eq!(
        b.handle_data(&[0u8; PUBLIC_KEY_LEN], lookup(&have)),
        Err(MseError::BadPublicKey)
    );
    let mut a = Handshake::initiator(torrent(1), Methods::PREFER_RC4, b"", entropy(10));
    assert_eq!(
        a.handle_data(&[0xFF; PUBLIC_KEY_LEN], lookup(&have)),
        Err(MseError::BadPublicKey)
    );

    // A responder that never sends the verification constant.
    let mut a = Handshake::initiator(torrent(1), Methods::PREFER_RC4, b"", entropy(11));
    let b_key = PrivateKey::new([3; 20]).public_key();
    a.handle_data(&b_key, lookup(&have)).unwrap();
    assert!(a.poll_transmit().is_some());
    a.handle_data(&[0u8; MAX_PAD + 7], lookup(&have)).unwrap();
    assert_eq!(
        a.handle_data(&[0u8], lookup(&have)),
        Err(MseError::NoSync("verification constant"))
    );
}

#[test]
fn a_tampered_verification_constant_or_select_is_refused() {
    let have = [torrent(1)];
    // Flip a bit in the encrypted VC of step 3 (right after the two hashes).
    let mut a = Handshake::initiator(torrent(1), Methods::PREFER_RC4, b"", entropy(12));
    let mut b = Handshake::responder(Methods::PREFER_RC4, entropy(13));
    let step1 = a.poll_transmit().unwrap();
    b.handle_data(&step1, lookup(&have)).unwrap();
    a.handle_data(&b.poll_transmit().unwrap(), lookup(&have))
        .unwrap();
    let mut step3 = a.poll_transmit().unwrap();
    step3[40] ^= 1;
    assert_eq!(
        b.handle_data(&step3, lookup(&have)),
        Err(MseError::BadVerification)
    );

    // A responder selecting a method the initiator did not offer.
    let mut a = Handshake::initiator(torrent(1), Methods::RC4_ONLY, b"", entropy(14));
    let mut b = Handshake::responder(Methods::PREFER_RC4, entropy(15));
    three_steps(&mut a, &mut b, &have);
    let mut step4 = b.poll_transmit().unwrap();
    // VC (8) then crypto_select (4): turn RC4 (2) into plaintext (1) under the keystream.
    step4[11] ^= 0x02 ^ 0x01;
    assert_eq!(
        a.handle_data(&step4, lookup(&have)),
        Err(MseError::BadSelect(1))
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever a peer sends, either side ends in an error or keeps waiting: no panic, and
    /// never more buffered than the bound.
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2000),
                                   cut in 0usize..2000, seed in any::<u8>()) {
        let have = [torrent(1)];
        let cut = cut.min(data.len());
        let mut b = Handshake::responder(Methods::PREFER_RC4, entropy(seed));
        let _ = b.handle_data(&data[..cut], lookup(&have));
        let _ = b.handle_data(&data[cut..], lookup(&have));
        prop_assert!(b.buf.len() <= MAX_BUFFER);
        let mut a = Handshake::initiator(torrent(1), Methods::PREFER_RC4, b"", entropy(seed));
        let _ = a.handle_data(&data[..cut], lookup(&have));
        let _ = a.handle_data(&data[cut..], lookup(&have));
        prop_assert!(a.buf.len() <= MAX_BUFFER);
    }

    /// Random entropy, payloads and fragmentation: the handshake always completes.
    #[test]
    fn random_handshakes_complete(sa in any::<u8>(), sb in any::<u8>(), chunk in 1usize..700,
                                  ia in proptest::collection::vec(any::<u8>(), 0..200)) {
        let have = [torrent(4), torrent(8)];
        let a = Handshake::initiator(torrent(8), Methods::PREFER_RC4, &ia, entropy(sa));
        let b = Handshake::responder(Methods::PREFER_RC4, entropy(sb.wrapping_add(128)));
        let (ea, eb) = run(a, b, &have, chunk).unwrap();
        prop_assert_eq!(ea.info_hash, torrent(8));
        prop_assert_eq!(eb.received, ia);
    }
}
