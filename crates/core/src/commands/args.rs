//! Argument parsing shared by the command families, and Redis 7's error texts.
//!
//! Number parsing follows Redis exactly, because its strictness is visible to clients:
//! `string2ll` rejects leading spaces, `+`, leading zeros and `-0`, so `INCR` on `" 1"` fails.

use tandem_resp::Frame;

/// Largest string value (Redis's default `proto-max-bulk-len`): 512 MiB.
pub const STRING_MAX_BYTES: u64 = 512 * 1024 * 1024;

pub const SYNTAX_ERROR: &str = "ERR syntax error";
pub const NOT_AN_INTEGER: &str = "ERR value is not an integer or out of range";
pub const NOT_A_FLOAT: &str = "ERR value is not a valid float";
pub const OVERFLOW: &str = "ERR increment or decrement would overflow";
pub const STRING_TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
pub const NO_SUCH_KEY: &str = "ERR no such key";

pub fn syntax_error() -> Frame {
    Frame::error(SYNTAX_ERROR)
}

pub fn not_an_integer() -> Frame {
    Frame::error(NOT_AN_INTEGER)
}

/// `ERR invalid expire time in 'set' command` (`command` is the lower-case name).
pub fn invalid_expire_time(command: &str) -> Frame {
    Frame::error(format!("ERR invalid expire time in '{command}' command"))
}

/// ASCII case-insensitive comparison of an argument with a lower-case keyword.
pub fn is_keyword(arg: &[u8], keyword: &str) -> bool {
    arg.eq_ignore_ascii_case(keyword.as_bytes())
}

/// Redis `string2ll`: an optional `-`, then digits without leading zeros ("0" alone is fine),
/// no spaces, no `+`, within `i64`.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s {
        [] => return None,
        [b'0'] => return Some(0),
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    // Accumulate as a negative number so i64::MIN parses.
    let mut value: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_sub(i64::from(c - b'0'))?;
    }
    if negative {
        Some(value)
    } else {
        value.checked_neg()
    }
}

/// An integer argument, or `ERR value is not an integer or out of range`.
pub fn int_arg(s: &[u8]) -> Result<i64, Frame> {
    parse_i64(s).ok_or_else(not_an_integer)
}

/// The unit of a relative or absolute expiry argument (or of a TTL reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TimeUnit {
    Seconds,
    Milliseconds,
}

/// Redis's `getExpireMillisecondsOrReply` (SET, SETEX, PSETEX, GETEX): the time must be a
/// positive integer; seconds are converted to ms; a relative time is added to `now_ms`; any
/// overflow is `invalid expire time`. Returns the absolute deadline in ms.
pub fn set_expire_deadline(
    arg: &[u8],
    unit: TimeUnit,
    relative: bool,
    now_ms: i64,
    command: &str,
) -> Result<i64, Frame> {
    let t = int_arg(arg)?;
    if t <= 0 || (unit == TimeUnit::Seconds && t > i64::MAX / 1000) {
        return Err(invalid_expire_time(command));
    }
    let mut ms = if unit == TimeUnit::Seconds {
        t * 1000
    } else {
        t
    };
    if relative {
        // Redis adds in C and then checks for a wrapped (non-positive) result.
        ms = ms.wrapping_add(now_ms);
    }
    if ms <= 0 {
        return Err(invalid_expire_time(command));
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string2ll_strictness() {
        for ok in [
            "0",
            "1",
            "-1",
            "9223372036854775807",
            "-9223372036854775808",
            "10",
        ] {
            assert_eq!(parse_i64(ok.as_bytes()), ok.parse().ok(), "{ok}");
        }
        for bad in [
            "",
            " 1",
            "1 ",
            "+1",
            "01",
            "-0",
            "-",
            "1.5",
            "9223372036854775808",
            "-9223372036854775809",
            "abc",
            "1e3",
            "00",
        ] {
            assert_eq!(parse_i64(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn expire_deadlines_match_redis() {
        let now = 1_000_000;
        let d = |a: &str, u, r| set_expire_deadline(a.as_bytes(), u, r, now, "set");
        assert_eq!(d("10", TimeUnit::Seconds, true), Ok(now + 10_000));
        assert_eq!(d("10", TimeUnit::Milliseconds, true), Ok(now + 10));
        assert_eq!(d("5", TimeUnit::Seconds, false), Ok(5000));
        let invalid = Err(invalid_expire_time("set"));
        assert_eq!(d("0", TimeUnit::Seconds, true), invalid);
        assert_eq!(d("-1", TimeUnit::Milliseconds, true), invalid);
        assert_eq!(d("9223372036854775807", TimeUnit::Seconds, true), invalid);
        assert_eq!(
            d("9223372036854775807", TimeUnit::Milliseconds, true),
            invalid
        );
        assert_eq!(
            d("9223372036854775807", TimeUnit::Milliseconds, false),
            Ok(i64::MAX)
        );
        assert_eq!(
            d("9223372036854775", TimeUnit::Seconds, false),
            Ok(9_223_372_036_854_775_000)
        );
        assert_eq!(d("x", TimeUnit::Seconds, true), Err(not_an_integer()));
    }
}
