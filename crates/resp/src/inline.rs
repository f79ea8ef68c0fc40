//! Splitting an inline request line into arguments, as Redis's `sdssplitargs` does.

use bytes::Bytes;

/// Splits one inline request line (without its line ending) into arguments.
///
/// Rules, all from `sdssplitargs`: arguments are separated by runs of whitespace (space, `\t`,
/// `\n`, `\v`, `\f`, `\r` are skipped between arguments, but only space, `\t`, `\n` and `\r` end
/// an unquoted argument); `"..."` understands `\xHH`, `\n`, `\r`, `\t`, `\b`, `\a` and `\<any>`;
/// `'...'` understands only `\'`; a quote may open mid-argument (`a"b c"` is `ab c`); a closing
/// quote must be followed by whitespace or the end of the line. `None` means unbalanced quotes.
///
/// One deliberate difference: Redis works on C strings, so a NUL byte ends the line early (and
/// in practice a line holding a NUL never reaches it, see `RequestParser`). Here NUL is an ordinary
/// byte.
pub(crate) fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let at = |i: usize| line.get(i).copied();
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while at(i).is_some_and(is_c_space) {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut arg = Vec::new();
        let mut quote = Quote::None;
        loop {
            match quote {
                Quote::Double => match at(i) {
                    None => return None,
                    Some(b'\\')
                        if at(i + 1) == Some(b'x')
                            && at(i + 2).is_some_and(|b| b.is_ascii_hexdigit())
                            && at(i + 3).is_some_and(|b| b.is_ascii_hexdigit()) =>
                    {
                        arg.push(hex_value(line[i + 2]) * 16 + hex_value(line[i + 3]));
                        i += 4;
                    }
                    Some(b'\\') if i + 1 < line.len() => {
                        arg.push(match line[i + 1] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                        i += 2;
                    }
                    Some(b'"') => {
                        if at(i + 1).is_some_and(|b| !is_c_space(b)) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    Some(byte) => {
                        arg.push(byte);
                        i += 1;
                    }
                },
                Quote::Single => match at(i) {
                    None => return None,
                    Some(b'\\') if at(i + 1) == Some(b'\'') => {
                        arg.push(b'\'');
                        i += 2;
                    }
                    Some(b'\'') => {
                        if at(i + 1).is_some_and(|b| !is_c_space(b)) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    Some(byte) => {
                        arg.push(byte);
                        i += 1;
                    }
                },
                Quote::None => match at(i) {
                    None => break,
                    Some(b' ' | b'\n' | b'\r' | b'\t') => {
                        i += 1;
                        break;
                    }
                    Some(b'"') => {
                        quote = Quote::Double;
                        i += 1;
                    }
                    Some(b'\'') => {
                        quote = Quote::Single;
                        i += 1;
                    }
                    Some(byte) => {
                        arg.push(byte);
                        i += 1;
                    }
                },
            }
        }
        args.push(Bytes::from(arg));
    }
}

enum Quote {
    None,
    Double,
    Single,
}

/// C's `isspace` in the C locale.
fn is_c_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &[u8]) -> Option<Vec<Vec<u8>>> {
        split_args(line).map(|args| args.into_iter().map(|a| a.to_vec()).collect())
    }

    fn args(list: &[&[u8]]) -> Option<Vec<Vec<u8>>> {
        Some(list.iter().map(|a| a.to_vec()).collect())
    }

    /// Each case was checked against redis-server 7.0 with `ECHO`.
    #[test]
    fn quoting_matches_redis() {
        assert_eq!(split(b""), args(&[]));
        assert_eq!(split(b"   \t "), args(&[]));
        assert_eq!(split(b"SET k v"), args(&[b"SET", b"k", b"v"]));
        assert_eq!(split(b"  SET\t\tk   v  "), args(&[b"SET", b"k", b"v"]));
        assert_eq!(split(br#"ECHO "a\x41\n\z""#), args(&[b"ECHO", b"aA\nz"]));
        assert_eq!(split(br#"ECHO "\x4""#), args(&[b"ECHO", b"x4"]));
        assert_eq!(split(br#"ECHO "\xzz""#), args(&[b"ECHO", b"xzz"]));
        assert_eq!(split(br#"ECHO "\xAf""#), args(&[b"ECHO", b"\xaf"]));
        assert_eq!(split(br#"ECHO 'it\'s'"#), args(&[b"ECHO", b"it's"]));
        assert_eq!(split(br#"ECHO 'a\b'"#), args(&[b"ECHO", br"a\b"]));
        assert_eq!(split(br#"ECHO "" ''"#), args(&[b"ECHO", b"", b""]));
        assert_eq!(split(b"ECHO \"a\rb\""), args(&[b"ECHO", b"a\rb"]));
        assert_eq!(split(b"ECHO a\rb"), args(&[b"ECHO", b"a", b"b"]));
        assert_eq!(split(b"\x0bECHO x"), args(&[b"ECHO", b"x"]));
        assert_eq!(split(b"ECHO\x0bx"), args(&[b"ECHO\x0bx"]));
        assert_eq!(split(b"ECHO \"a\"\x0b"), args(&[b"ECHO", b"a"]));
        assert_eq!(split(br#"a"b c"d e"#), None);
        assert_eq!(split(br#"a"b c" e"#), args(&[b"ab c", b"e"]));
        assert_eq!(split(br#"ECHO "a"b"#), None);
        assert_eq!(split(br#"ECHO 'a'b"#), None);
        assert_eq!(split(br#"ECHO "abc"#), None);
        assert_eq!(split(br#"ECHO 'abc"#), None);
        assert_eq!(split(br#"ECHO "a\""#), None);
        assert_eq!(split(b"a\0b"), args(&[b"a\0b"]));
    }
}
