//! Micro benchmarks of the wire format: a ResNet-18-sized set of weights encoded into and
//! decoded from a MessagePack envelope, in GB/s of tensor bytes, each against a plain memory
//! copy of the same bytes measured in the same run, interleaved.

use std::hint::black_box;
use std::time::Instant;

use anyhow::Result;
use fl_tensor::{Body, Envelope, decode_view};

use crate::federated::model;
use crate::report::{Summary, machine, today};

/// ResNet-18's parameter count.
const PARAMS: usize = 11_689_512;

/// GB/s per repeat.
#[derive(Debug, Default)]
struct Rates {
    encode: Vec<f64>,
    decode: Vec<f64>,
    decode_view: Vec<f64>,
    copy: Vec<f64>,
}

fn rate(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e9
}

/// Runs the measurements and returns the BENCHMARKS.md section.
pub fn run(repeats: usize) -> Result<String> {
    let set = model(PARAMS, 7)?;
    let tensor_bytes = set.byte_size() as usize;
    let envelope = Envelope::new("bench", 1, "site-1", Body::global_weights(set));
    let mut rates = Rates::default();
    let mut target = vec![0u8; tensor_bytes];
    let source = envelope.encode()?;
    // Touch every page of the copy's target once, so no repeat pays for page faults.
    target.copy_from_slice(&source[..tensor_bytes]);
    for _ in 0..repeats.max(1) {
        let started = Instant::now();
        let bytes = black_box(envelope.encode()?);
        rates
            .encode
            .push(rate(tensor_bytes, started.elapsed().as_secs_f64()));
        drop(bytes);

        let started = Instant::now();
        let decoded = black_box(Envelope::decode(&source)?);
        rates
            .decode
            .push(rate(tensor_bytes, started.elapsed().as_secs_f64()));
        drop(decoded);

        let started = Instant::now();
        let view = black_box(decode_view(&source)?);
        rates
            .decode_view
            .push(rate(tensor_bytes, started.elapsed().as_secs_f64()));
        drop(view);

        let started = Instant::now();
        target.copy_from_slice(black_box(&source[..tensor_bytes]));
        black_box(&target);
        rates
            .copy
            .push(rate(tensor_bytes, started.elapsed().as_secs_f64()));
    }
    let ratio = |values: &[f64]| -> Vec<f64> {
        values.iter().zip(&rates.copy).map(|(v, c)| v / c).collect()
    };
    Ok(format!(
        "## Wire format (MessagePack envelopes)\n\n\
         Command: `./scripts/bench` · date: {} · machine: {} · {} repeats, median (min–max).\n\n\
         A ResNet-18-sized set of weights ({PARAMS} f32 parameters in 62 tensors, {:.1} MiB) as \
         `Body::GlobalWeights`: `encode` (CRC-32 of every tensor, SHA-256 digest check, one \
         MessagePack `bin` per tensor), `decode` (every checksum, dtype and length verified, the \
         tensors copied out), `decode_view` (the same checks, tensors borrowed from the received \
         bytes), each in GB/s of tensor bytes against a plain memory copy of the same number of \
         bytes in the same run, interleaved.\n\n\
         | | GB/s | ratio to copy |\n|---|---|---|\n\
         | encode | {} | **{}** |\n| decode | {} | **{}** |\n| decode_view | {} | **{}** |\n\
         | memory copy | {} | 1 |\n\n\
         Encoding computes a CRC-32 per tensor and the set's SHA-256 digest; decoding verifies \
         both (and `decode` copies the tensors out, `decode_view` does not); MessagePack framing \
         itself adds a few bytes per tensor. All of it runs on one thread.\n",
        today(),
        machine(),
        repeats.max(1),
        tensor_bytes as f64 / 1024.0 / 1024.0,
        Summary::of(&rates.encode).show(2),
        Summary::of(&ratio(&rates.encode)).show(3),
        Summary::of(&rates.decode).show(2),
        Summary::of(&ratio(&rates.decode)).show(3),
        Summary::of(&rates.decode_view).show(2),
        Summary::of(&ratio(&rates.decode_view)).show(3),
        Summary::of(&rates.copy).show(2),
    ))
}
