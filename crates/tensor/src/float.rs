//! Half-precision conversions that give the same bits on every machine.
//!
//! Averages are computed in `f64` and written back in the tensor's own type. Going from
//! `f64` to `f16`/`bf16` through `f32` with two round-to-nearest steps can round twice
//! (`1 + 2^-11 + 2^-40` would become `1.0` instead of `1 + 2^-10`), and the `half` crate
//! takes that path or a direct one depending on the CPU's features. So the narrowing here
//! first rounds to `f32` *to odd* (exact when the value fits, otherwise the neighbour with an
//! odd last bit), then to nearest-even: with at least two spare bits in the intermediate
//! format this equals one correct rounding (Boldo and Melquiond, 2008). Integer code only,
//! so the result does not depend on the CPU.

/// Returns `x` rounded to `f32` with round-to-odd (used only as an intermediate step).
fn f64_to_f32_round_to_odd(x: f64) -> f32 {
    let nearest = x as f32;
    if f64::from(nearest) == x || !nearest.is_finite() {
        return nearest;
    }
    let bits = nearest.to_bits();
    if bits & 1 == 1 {
        return nearest;
    }
    // Inexact with an even last bit: the other neighbour of x is odd. Sign-magnitude
    // encoding makes "one step toward x" a change of the magnitude bits by one.
    if f64::from(nearest).abs() > x.abs() {
        f32::from_bits(bits - 1)
    } else {
        f32::from_bits(bits + 1)
    }
}

/// Returns the binary16 bits nearest to `x` (ties to even, overflow to infinity).
pub(crate) fn f32_to_f16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32;
    let mantissa = bits & 0x7f_ffff;
    if exponent == 0xff {
        let nan = if mantissa == 0 { 0 } else { 0x200 };
        return sign | 0x7c00 | nan;
    }
    // Biased binary16 exponent.
    let e = exponent - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // Subnormal result (or zero): the value in units of 2^-24 is mantissa >> shift.
        if e < -10 {
            return sign;
        }
        let full = mantissa | 0x80_0000;
        let shift = (14 - e) as u32;
        let kept = full >> shift;
        let rest = full & ((1 << shift) - 1);
        let half = 1 << (shift - 1);
        let rounded = if rest > half || (rest == half && kept & 1 == 1) {
            kept + 1
        } else {
            kept
        };
        return sign | rounded as u16;
    }
    let kept = ((e as u32) << 10) | (mantissa >> 13);
    let rest = mantissa & 0x1fff;
    // A carry out of the mantissa correctly bumps the exponent (up to infinity).
    let rounded = if rest > 0x1000 || (rest == 0x1000 && kept & 1 == 1) {
        kept + 1
    } else {
        kept
    };
    sign | rounded as u16
}

/// Returns the value of binary16 bits (exact).
pub(crate) fn f16_bits_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exponent = u32::from((h >> 10) & 0x1f);
    let mantissa = u32::from(h & 0x3ff);
    match exponent {
        0 => {
            // Subnormal: mantissa * 2^-24, exact in f32.
            let magnitude = mantissa as f32 * (1.0 / 16_777_216.0);
            if sign != 0 { -magnitude } else { magnitude }
        }
        0x1f => f32::from_bits(sign | 0x7f80_0000 | (mantissa << 13)),
        _ => f32::from_bits(sign | ((exponent + 112) << 23) | (mantissa << 13)),
    }
}

/// Returns the bfloat16 bits nearest to `x` (ties to even, overflow to infinity).
pub(crate) fn f32_to_bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let bias = 0x7fff + ((bits >> 16) & 1);
    ((bits + bias) >> 16) as u16
}

/// Returns the value of bfloat16 bits (exact).
pub(crate) fn bf16_bits_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// Returns `x` correctly rounded to binary16 bits.
pub(crate) fn f64_to_f16_bits(x: f64) -> u16 {
    f32_to_f16_bits(f64_to_f32_round_to_odd(x))
}

/// Returns `x` correctly rounded to bfloat16 bits.
pub(crate) fn f64_to_bf16_bits(x: f64) -> u16 {
    f32_to_bf16_bits(f64_to_f32_round_to_odd(x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_finite_half_round_trips_bit_for_bit() {
        for h in 0..=u16::MAX {
            let f = f16_bits_to_f32(h);
            if !f.is_nan() {
                assert_eq!(f32_to_f16_bits(f), h, "f16 {h:#06x} = {f}");
                assert_eq!(f64_to_f16_bits(f64::from(f)), h, "f16 {h:#06x} via f64");
            }
            let b = bf16_bits_to_f32(h);
            if !b.is_nan() {
                assert_eq!(f32_to_bf16_bits(b), h, "bf16 {h:#06x} = {b}");
                assert_eq!(f64_to_bf16_bits(f64::from(b)), h, "bf16 {h:#06x} via f64");
            }
        }
        assert_eq!(f16_bits_to_f32(0x3c00), 1.0);
        assert_eq!(f16_bits_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_bits_to_f32(0xc000), -2.0);
        assert_eq!(f16_bits_to_f32(0x7bff), 65504.0);
    }

    #[test]
    fn narrowing_from_f64_rounds_once() {
        let eps = 2f64.powi(-40);
        // Just above, at, and just below the tie between 1 and the next binary16 number.
        assert_eq!(f64_to_f16_bits(1.0 + 2f64.powi(-11) + eps), 0x3c01);
        assert_eq!(f64_to_f16_bits(1.0 + 2f64.powi(-11)), 0x3c00);
        assert_eq!(f64_to_f16_bits(1.0 + 2f64.powi(-11) - eps), 0x3c00);
        assert_eq!(f64_to_f16_bits(1.0 + 3.0 * 2f64.powi(-11)), 0x3c02);
        // Rounding through f32 to nearest would give 1.0 here: that is the double rounding.
        assert_eq!(f32_to_f16_bits((1.0 + 2f64.powi(-11) + eps) as f32), 0x3c00);
        assert_eq!(f64_to_bf16_bits(1.0 + 2f64.powi(-8) + eps), 0x3f81);
        assert_eq!(f64_to_bf16_bits(1.0 + 2f64.powi(-8)), 0x3f80);
        assert_eq!(f64_to_bf16_bits(-(1.0 + 2f64.powi(-8) + eps)), 0xbf81);
        assert_eq!(
            f64_to_f16_bits(65520.0),
            0x7c00,
            "overflow rounds to infinity"
        );
        assert_eq!(f64_to_f16_bits(65519.0), 0x7bff);
        assert_eq!(f64_to_f16_bits(-0.0), 0x8000);
        assert_eq!(f64_to_f16_bits(2f64.powi(-25)), 0x0000, "tie to even zero");
        assert_eq!(f64_to_f16_bits(2f64.powi(-25) * (1.0 + eps)), 0x0001);
    }

    /// Rounds `x` to a grid of `bits` significant bits whose smallest exponent is
    /// `min_exponent`, with f64 arithmetic that is exact (scaling by powers of two and
    /// `round_ties_even`): an independent reference for the bit-level code.
    fn reference_round(x: f64, bits: i32, min_exponent: i32) -> f64 {
        let exponent = ((x.to_bits() >> 52) & 0x7ff) as i32 - 1023;
        let quantum = exponent.max(min_exponent) - (bits - 1);
        (x * 2f64.powi(-quantum)).round_ties_even() * 2f64.powi(quantum)
    }

    proptest! {
        #[test]
        fn f16_narrowing_matches_exact_reference(m in 1.0f64..2.0, e in -30i32..16, neg: bool) {
            let x = if neg { -m } else { m } * 2f64.powi(e);
            let expected = reference_round(x, 11, -14);
            let got = f64::from(f16_bits_to_f32(f64_to_f16_bits(x)));
            if expected.abs() >= 65520.0 {
                prop_assert!(got.is_infinite());
            } else {
                prop_assert_eq!(got, expected, "x = {:e}", x);
            }
        }

        #[test]
        fn bf16_narrowing_matches_exact_reference(m in 1.0f64..2.0, e in -140i32..120, neg: bool) {
            let x = if neg { -m } else { m } * 2f64.powi(e);
            let expected = reference_round(x, 8, -126);
            let got = f64::from(bf16_bits_to_f32(f64_to_bf16_bits(x)));
            prop_assert_eq!(got, expected, "x = {:e}", x);
        }
    }
}
