//! Number text in both directions, byte-exact with Redis: `string2ll` for parsing, `%.17g` for
//! doubles.

use std::fmt::Write as _;

/// Parses a signed decimal exactly as Redis's `string2ll` does: optional `-`, no `+`, no leading
/// zeros (except `0` itself), no `-0`, no spaces, fits in an `i64`, shorter than 21 bytes.
pub(crate) fn parse_i64(text: &[u8]) -> Option<i64> {
    // Redis: LONG_STR_SIZE = 21; longer strings are rejected before looking at them.
    if text.is_empty() || text.len() >= 21 {
        return None;
    }
    if text == b"0" {
        return Some(0);
    }
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (&first, rest) = digits.split_first()?;
    if !(b'1'..=b'9').contains(&first) {
        return None;
    }
    let mut value = u64::from(first - b'0');
    for &byte in rest {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(byte - b'0'))?;
    }
    if negative {
        // -(i64::MIN) is one more than i64::MAX.
        if value > i64::MAX as u64 + 1 {
            return None;
        }
        Some((value as i64).wrapping_neg())
    } else {
        i64::try_from(value).ok()
    }
}

/// Room for the longest `%.17g` text: `-1.2345678901234567e-308`.
pub(crate) const DOUBLE_TEXT_MAX: usize = 32;

/// Formats `value` as Redis 7.0's `addReplyDouble` does: `inf`, `-inf`, `nan`, otherwise C's
/// `%.17g` (17 significant digits, trailing zeros removed, exponent form when the exponent is
/// below -4 or at least 17). Writes into `out` and returns the text's length.
pub(crate) fn format_double(value: f64, out: &mut [u8; DOUBLE_TEXT_MAX]) -> usize {
    let text: &[u8] = if value.is_nan() {
        b"nan"
    } else if value.is_infinite() {
        if value > 0.0 {
            b"inf"
        } else {
            b"-inf"
        }
    } else if value == 0.0 {
        if value.is_sign_negative() {
            b"-0"
        } else {
            b"0"
        }
    } else {
        return format_g17(value, out);
    };
    out[..text.len()].copy_from_slice(text);
    text.len()
}

/// `%.17g` for finite, non-zero values, built from Rust's correctly rounded `{:.16e}` (which,
/// like glibc, rounds ties to even).
fn format_g17(value: f64, out: &mut [u8; DOUBLE_TEXT_MAX]) -> usize {
    // Scientific form first: "-d.dddddddddddddddde-X".
    let mut sci = StackText::default();
    // Writing to a StackText cannot fail for this input: it is at most 25 bytes.
    let _ = write!(sci, "{:.16e}", value.abs());
    let sci = sci.as_bytes();
    let e_pos = sci.iter().position(|&b| b == b'e').unwrap_or(sci.len());
    let mut digits = [0u8; 17];
    let mut n_digits = 0;
    for &b in &sci[..e_pos] {
        if b.is_ascii_digit() && n_digits < digits.len() {
            digits[n_digits] = b;
            n_digits += 1;
        }
    }
    let exponent: i32 = std::str::from_utf8(&sci[(e_pos + 1).min(sci.len())..])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);

    let mut len = 0;
    let mut push = |b: u8| {
        out[len] = b;
        len += 1;
    };
    if value < 0.0 {
        push(b'-');
    }
    if (-4..17).contains(&exponent) {
        // Fixed notation with 17 significant digits, then trailing fractional zeros dropped.
        if exponent >= 0 {
            let int_digits = exponent as usize + 1;
            digits[..int_digits].iter().for_each(|&d| push(d));
            let frac = trim_zeros(&digits[int_digits..]);
            if !frac.is_empty() {
                push(b'.');
                frac.iter().for_each(|&d| push(d));
            }
        } else {
            push(b'0');
            push(b'.');
            (0..(-exponent - 1)).for_each(|_| push(b'0'));
            trim_zeros(&digits).iter().for_each(|&d| push(d));
        }
    } else {
        push(digits[0]);
        let frac = trim_zeros(&digits[1..]);
        if !frac.is_empty() {
            push(b'.');
            frac.iter().for_each(|&d| push(d));
        }
        push(b'e');
        push(if exponent < 0 { b'-' } else { b'+' });
        let magnitude = exponent.unsigned_abs();
        if magnitude < 10 {
            push(b'0');
        }
        let mut buf = itoa::Buffer::new();
        buf.format(magnitude).bytes().for_each(&mut push);
    }
    len
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let end = digits.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1);
    &digits[..end]
}

/// A fixed-size `fmt::Write` sink, so formatting a double never allocates.
#[derive(Default)]
struct StackText {
    buf: [u8; DOUBLE_TEXT_MAX],
    len: usize,
}

impl StackText {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string2ll_rules() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"123"), Some(123));
        assert_eq!(parse_i64(b"-5"), Some(-5));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b"01",
            b"-0",
            b" 1",
            b"1 ",
            b"1a",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"99999999999999999999",
            b"000000000000000000001",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    fn g17(value: f64) -> String {
        let mut buf = [0u8; DOUBLE_TEXT_MAX];
        let len = format_double(value, &mut buf);
        String::from_utf8(buf[..len].to_vec()).unwrap()
    }

    /// Values and texts taken from `ZSCORE` against redis-server 7.0.15.
    #[test]
    fn doubles_match_redis() {
        assert_eq!(g17(1.1), "1.1000000000000001");
        assert_eq!(g17(1e17), "1e+17");
        assert_eq!(g17(1e16), "10000000000000000");
        assert_eq!(g17(0.0), "0");
        assert_eq!(g17(-0.0), "-0");
        assert_eq!(g17(2f64.powi(-25)), "2.9802322387695312e-08");
        assert_eq!(g17(123.0), "123");
        assert_eq!(g17(1e-5), "1.0000000000000001e-05");
        assert_eq!(g17(0.0001), "0.0001");
        assert_eq!(g17(f64::INFINITY), "inf");
        assert_eq!(g17(f64::NEG_INFINITY), "-inf");
        assert_eq!(g17(f64::NAN), "nan");
        assert_eq!(g17(-1.5), "-1.5");
        assert_eq!(g17(f64::MAX), "1.7976931348623157e+308");
        assert_eq!(g17(f64::MIN_POSITIVE), "2.2250738585072014e-308");
        assert_eq!(g17(5e-324), "4.9406564584124654e-324");
        assert_eq!(g17(1e100), "1e+100");
    }

    extern "C" {
        fn snprintf(
            buf: *mut std::ffi::c_char,
            len: usize,
            fmt: *const std::ffi::c_char,
            ...
        ) -> std::ffi::c_int;
    }

    /// Differential test against the C library's own `%.17g`, which is what Redis calls.
    #[test]
    fn doubles_match_libc_g17() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..200_000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Mix raw bit patterns (every exponent) with short decimals (ties and round numbers).
            let value = if i % 2 == 0 {
                f64::from_bits(state)
            } else {
                (state % 2_000_001) as f64 / 10f64.powi((state >> 40) as i32 % 12) - 100.0
            };
            if !value.is_finite() {
                continue;
            }
            let mut c_buf = [0 as std::ffi::c_char; 64];
            // SAFETY: the buffer is 64 bytes, `%.17g` of a double needs at most 25 plus NUL, and
            // the format string is NUL-terminated and takes exactly one double.
            let n = unsafe { snprintf(c_buf.as_mut_ptr(), c_buf.len(), c"%.17g".as_ptr(), value) };
            let expected: Vec<u8> = c_buf[..n as usize].iter().map(|&c| c as u8).collect();
            assert_eq!(
                g17(value).as_bytes(),
                &expected[..],
                "bits {:#x}",
                value.to_bits()
            );
        }
    }
}
