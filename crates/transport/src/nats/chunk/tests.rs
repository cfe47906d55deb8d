use super::*;

fn data(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Pushes chunks in the given order; returns the delivered messages and every failure.
fn feed(
    r: &mut Reassembler<u32>,
    chunks: impl IntoIterator<Item = (ChunkMeta, Vec<u8>)>,
) -> (Vec<Vec<u8>>, Vec<ReassemblyError>, Vec<u32>) {
    let mut delivered = Vec::new();
    let mut failed = Vec::new();
    let mut acked = Vec::new();
    for (meta, payload) in chunks {
        let token = meta.index;
        for outcome in r.push(meta, &payload, token) {
            match outcome {
                Outcome::Pending => {}
                Outcome::Complete {
                    message, tokens, ..
                } => {
                    delivered.push(message);
                    acked.extend(tokens);
                }
                Outcome::Failed { error, tokens } => {
                    failed.push(error);
                    acked.extend(tokens);
                }
                Outcome::Stale(t) => acked.push(t),
            }
        }
    }
    (delivered, failed, acked)
}

fn chunks(id: &str, bytes: &[u8], size: usize) -> Vec<(ChunkMeta, Vec<u8>)> {
    split(id, bytes, size)
        .into_iter()
        .map(|(m, r)| (m, bytes[r].to_vec()))
        .collect()
}

const CHUNK: usize = 1024 * 1024 - 8192;
const LIMITS: Limits = Limits {
    max_message: 64 << 20,
    max_chunk: CHUNK,
};

#[test]
fn round_trips_every_size() {
    for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * 1024 * 1024] {
        let bytes = data(len);
        let parts = chunks("m", &bytes, CHUNK);
        assert_eq!(parts.len(), len.div_ceil(CHUNK).max(1), "len {len}");
        assert!(parts.iter().all(|(_, p)| p.len() <= CHUNK));
        let mut r = Reassembler::new(LIMITS);
        let (delivered, failed, acked) = feed(&mut r, parts.clone());
        assert_eq!(delivered, vec![bytes], "len {len}");
        assert!(failed.is_empty());
        assert_eq!(acked.len(), parts.len());
        assert_eq!(r.in_progress(), None);
    }
}

#[test]
fn accepts_chunks_in_any_order() {
    let bytes = data(10_000);
    let mut parts = chunks("m", &bytes, 1024);
    parts.reverse();
    parts.swap(2, 7);
    let mut r = Reassembler::new(LIMITS);
    let (delivered, failed, _) = feed(&mut r, parts);
    assert_eq!(delivered, vec![bytes]);
    assert!(failed.is_empty());
}

#[test]
fn refuses_a_flipped_byte() {
    let bytes = data(10_000);
    let mut parts = chunks("m", &bytes, 1024);
    parts[3].1[17] ^= 0x01;
    let mut r = Reassembler::new(LIMITS);
    let (delivered, failed, acked) = feed(&mut r, parts);
    assert!(delivered.is_empty());
    assert!(matches!(
        failed.as_slice(),
        [ReassemblyError::CorruptChunk { index: 3, .. }]
    ));
    assert_eq!(
        acked.len(),
        10,
        "every chunk is discarded, none left pending"
    );
}

#[test]
fn refuses_a_message_whose_digest_does_not_match() {
    // Chunks consistent with their own CRC-32 but not with the message's SHA-256 (as if
    // a sender's buffer changed between hashing and chunking).
    let bytes = data(3000);
    let mut parts = chunks("m", &bytes, 1024);
    parts[1].1[0] ^= 0xff;
    parts[1].0.crc32 = crc32fast::hash(&parts[1].1);
    let mut r = Reassembler::new(LIMITS);
    let (delivered, failed, _) = feed(&mut r, parts);
    assert!(delivered.is_empty());
    assert!(matches!(
        failed.as_slice(),
        [ReassemblyError::DigestMismatch { .. }]
    ));
}

#[test]
fn reports_a_missing_chunk_when_the_next_message_starts() {
    let first = data(5000);
    let second = data(1500);
    let mut parts = chunks("a", &first, 1024);
    parts.remove(2);
    parts.extend(chunks("b", &second, 1024));
    let mut r = Reassembler::new(LIMITS);
    let (delivered, failed, acked) = feed(&mut r, parts);
    assert_eq!(delivered, vec![second]);
    assert_eq!(
        failed,
        vec![ReassemblyError::Missing {
            message_id: "a".into(),
            missing: vec![2],
            missing_count: 1,
            count: 5
        }]
    );
    assert_eq!(acked.len(), 4 + 2);
    // A late chunk of the abandoned message is stale, not the start of a new one.
    let late = chunks("a", &first, 1024).remove(2);
    let (delivered, failed, acked) = feed(&mut r, [late]);
    assert!(delivered.is_empty() && failed.is_empty());
    assert_eq!(acked, vec![2]);
}

#[test]
fn drops_duplicate_chunks() {
    let bytes = data(3000);
    let parts = chunks("m", &bytes, 1024);
    let mut with_dups = vec![parts[0].clone(), parts[0].clone(), parts[1].clone()];
    with_dups.extend(parts.iter().cloned());
    let mut r = Reassembler::new(LIMITS);
    let (delivered, failed, acked) = feed(&mut r, with_dups);
    assert_eq!(delivered, vec![bytes]);
    assert!(failed.is_empty());
    // Every token comes back exactly once: 3 with the message, 3 as stale duplicates.
    assert_eq!(acked.len(), 6);
}

#[test]
fn refuses_inconsistent_headers() {
    let bytes = data(3000);
    let mut parts = chunks("m", &bytes, 1024);
    parts[1].0.count = 4;
    let mut r = Reassembler::new(LIMITS);
    let (delivered, failed, _) = feed(&mut r, parts);
    assert!(delivered.is_empty());
    assert!(matches!(
        failed[0],
        ReassemblyError::Inconsistent { index: 1, .. }
    ));
}

/// One chunk whose headers announce `total_len` bytes in `count` chunks.
fn forged(total_len: u64, count: u32, payload: &[u8]) -> (ChunkMeta, Vec<u8>) {
    let meta = ChunkMeta {
        message_id: "forged".into(),
        index: 0,
        count,
        crc32: crc32fast::hash(payload),
        total_len,
        sha256: sha256_hex(payload),
    };
    (meta, payload.to_vec())
}

#[test]
fn refuses_what_the_headers_cannot_hold_before_keeping_anything() {
    let mut r = Reassembler::new(LIMITS);
    // A 100-byte chunk announcing 2^60 bytes (it aborted the coordinator once).
    let (_, failed, acked) = feed(&mut r, [forged(1 << 60, 1, &[7; 100])]);
    assert_eq!(
        failed,
        vec![ReassemblyError::TooLarge {
            message_id: "forged".into(),
            size: 1 << 60,
            limit: 64 << 20
        }]
    );
    assert_eq!(acked.len(), 1);
    assert_eq!(r.in_progress(), None);
    // 5·10^7 chunks announced for a small message, a chunk larger than allowed, chunks
    // of other sizes than the first, bytes beyond the announced size.
    let cases = [
        forged(4096, 50_000_000, &[1; 1024]),
        forged(10 << 20, 2, &[1; 1024]),
    ];
    for case in cases {
        let mut r = Reassembler::new(LIMITS);
        let (delivered, failed, _) = feed(&mut r, [case]);
        assert!(delivered.is_empty());
        assert!(
            matches!(&failed[..], [ReassemblyError::Inconsistent { reason, .. }] if reason.contains("cannot hold")),
            "{failed:?}"
        );
    }
    let mut big = forged(3 * 1024, 3, &[1; 1024]);
    big.1 = vec![1; CHUNK + 1];
    let mut small = forged(4 * 1024, 4, &[1; 1024]);
    small.1 = vec![1; 100];
    for case in [big, small] {
        let mut r = Reassembler::new(LIMITS);
        let (_, failed, _) = feed(&mut r, [case]);
        assert!(
            matches!(&failed[..], [ReassemblyError::Inconsistent { .. }]),
            "{failed:?}"
        );
    }
    let bytes = data(3000);
    let mut parts = chunks("m", &bytes, 1024);
    parts[2].1.extend_from_slice(&[0; 2000]);
    let mut r = Reassembler::new(LIMITS);
    let (_, failed, _) = feed(&mut r, parts);
    assert!(
        matches!(&failed[..], [ReassemblyError::Inconsistent { reason, .. }] if reason.contains("exceed")),
        "{failed:?}"
    );
}

#[test]
fn an_impossible_chunk_does_not_end_the_message_in_progress() {
    let bytes = data(5000);
    let mut parts = chunks("honest", &bytes, 1024);
    parts.insert(2, forged(1 << 60, 1, &[7; 100]));
    let mut r = Reassembler::new(LIMITS);
    let (delivered, failed, acked) = feed(&mut r, parts);
    assert_eq!(delivered, vec![bytes]);
    assert!(
        matches!(&failed[..], [ReassemblyError::TooLarge { .. }]),
        "{failed:?}"
    );
    assert_eq!(acked.len(), 6);
}

#[test]
fn lists_a_bounded_number_of_missing_chunks() {
    let bytes = data(64 * 1024);
    let mut parts = chunks("a", &bytes, 1024);
    parts.truncate(1);
    parts.extend(chunks("b", &bytes[..10], 1024));
    let mut r = Reassembler::new(LIMITS);
    let (_, failed, _) = feed(&mut r, parts);
    let [
        ReassemblyError::Missing {
            missing,
            missing_count,
            count,
            ..
        },
    ] = &failed[..]
    else {
        panic!("{failed:?}");
    };
    assert_eq!((missing.len(), *missing_count, *count), (8, 63, 64));
    assert_eq!(missing[0], 1);
    assert!(failed[0].to_string().len() < 200, "{}", failed[0]);
}
