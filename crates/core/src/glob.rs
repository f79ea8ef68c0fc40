//! Glob-style matching for KEYS and SCAN MATCH: a faithful port of Redis 7.0's
//! `stringmatchlen` (util.c), quirks included, since clients see them.
//!
//! - `*` any run of bytes, `?` one byte, `\x` the byte `x` literally;
//! - `[abc]`, `[^abc]`, `[a-z]` (reversed ranges like `[z-a]` work), `\` escapes inside a class;
//!   an unterminated `[` takes the rest of the pattern as the class;
//! - `nocase` folds ASCII letters only; range bounds compare as C `char`s (signed on x86-64);
//! - a nesting limit of [`GLOB_NESTING_MAX`] `*` levels (Redis's protection against abusive
//!   patterns): deeper patterns do not match;
//! - once the rest of the pattern after a `*` failed at every position, no earlier `*` can
//!   succeed either (Redis's `skipLongerMatches`), which keeps matching polynomial.
//!
//! Note that no pattern but a lone `*` (special-cased by KEYS and SCAN) matches the empty key:
//! Redis's loop never runs on an empty string.

/// Deepest `*` recursion before a pattern is refused (Redis: `nesting > 1000`).
pub const GLOB_NESTING_MAX: usize = 1000;

/// Whether `s` matches the glob `pattern` (Redis `stringmatchlen` semantics).
pub fn glob_match(pattern: &[u8], s: &[u8], nocase: bool) -> bool {
    let mut skip_longer_matches = false;
    match_at(pattern, s, nocase, &mut skip_longer_matches, 0)
}

/// The byte at `i`, or the C string terminator past the end (Redis reads it in a few places).
fn at(p: &[u8], i: usize) -> u8 {
    p.get(i).copied().unwrap_or(0)
}

fn lower(c: i32) -> i32 {
    if (i32::from(b'A')..=i32::from(b'Z')).contains(&c) {
        c + 32
    } else {
        c
    }
}

fn same_byte(a: u8, b: u8, nocase: bool) -> bool {
    if nocase {
        a.eq_ignore_ascii_case(&b)
    } else {
        a == b
    }
}

fn match_at(p: &[u8], s: &[u8], nocase: bool, skip: &mut bool, nesting: usize) -> bool {
    if nesting > GLOB_NESTING_MAX {
        return false;
    }
    let (mut pi, mut si) = (0usize, 0usize);
    while pi < p.len() && si < s.len() {
        match p[pi] {
            b'*' => {
                while at(p, pi + 1) == b'*' {
                    pi += 1;
                }
                if pi + 1 == p.len() {
                    return true;
                }
                while si < s.len() {
                    if match_at(&p[pi + 1..], &s[si..], nocase, skip, nesting + 1) {
                        return true;
                    }
                    if *skip {
                        return false;
                    }
                    si += 1;
                }
                // The rest of the pattern matches nowhere in the rest of the string, so a
                // longer match for any earlier `*` cannot help either.
                *skip = true;
                return false;
            }
            b'?' => si += 1,
            b'[' => {
                pi += 1;
                let negate = at(p, pi) == b'^';
                if negate {
                    pi += 1;
                }
                let c = s[si];
                let mut matched = false;
                loop {
                    let remaining = p.len() - pi;
                    if at(p, pi) == b'\\' && remaining >= 2 {
                        pi += 1;
                        // Redis compares escaped class members case-sensitively.
                        if p[pi] == c {
                            matched = true;
                        }
                    } else if at(p, pi) == b']' {
                        break;
                    } else if remaining == 0 {
                        // Unterminated class: step back so the outer increment ends the pattern.
                        pi -= 1;
                        break;
                    } else if remaining >= 3 && p[pi + 1] == b'-' {
                        // C `char` is signed on x86-64: bytes >= 0x80 sort below ASCII.
                        let mut start = i32::from(p[pi] as i8);
                        let mut end = i32::from(p[pi + 2] as i8);
                        let mut ch = i32::from(c as i8);
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        if nocase {
                            start = lower(start);
                            end = lower(end);
                            ch = lower(ch);
                        }
                        pi += 2;
                        if ch >= start && ch <= end {
                            matched = true;
                        }
                    } else if same_byte(p[pi], c, nocase) {
                        matched = true;
                    }
                    pi += 1;
                }
                if negate {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                si += 1;
            }
            b => {
                let literal = if b == b'\\' && p.len() - pi >= 2 {
                    pi += 1;
                    p[pi]
                } else {
                    b
                };
                if !same_byte(literal, s[si], nocase) {
                    return false;
                }
                si += 1;
            }
        }
        pi += 1;
        if si == s.len() {
            while at(p, pi) == b'*' {
                pi += 1;
            }
            break;
        }
    }
    pi >= p.len() && si == s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        glob_match(p.as_bytes(), s.as_bytes(), false)
    }

    #[test]
    fn wildcards() {
        assert!(m("*", "anything"));
        assert!(m("h?llo", "hello") && m("h?llo", "hallo") && !m("h?llo", "hllo"));
        assert!(m("h*llo", "hllo") && m("h*llo", "heeeello"));
        assert!(m("user:*:name", "user:42:name") && !m("user:*:name", "user:42:age"));
        assert!(m("a*b*c", "aXbYc") && !m("a*b*c", "aXbY"));
        assert!(m("**", "x") && m("a**", "a"));
        assert!(!m("a", "ab") && !m("ab", "a"));
    }

    #[test]
    fn classes() {
        assert!(m("h[ae]llo", "hello") && m("h[ae]llo", "hallo") && !m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo") && !m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo") && !m("h[a-b]llo", "hcllo"));
        assert!(m("[z-a]", "m"), "reversed ranges work");
        assert!(m("[\\]]", "]") && m("[a\\-z]", "-") && !m("[a\\-z]", "b"));
        assert!(m("[a-]", "]"), "a-] is the range ']'..'a' (reversed)");
        // Unterminated: the rest of the pattern is the class.
        assert!(m("[abc", "b") && !m("[abc", "d"));
        assert!(!m("[", "a") && m("[^", "a"));
    }

    #[test]
    fn escapes() {
        assert!(m("\\*", "*") && !m("\\*", "a"));
        assert!(m("a\\?", "a?") && !m("a\\?", "ab"));
        assert!(m("ab\\", "ab\\"), "a trailing backslash is literal");
    }

    #[test]
    fn nocase() {
        assert!(glob_match(b"HELLO", b"hello", true));
        assert!(glob_match(b"[A-C]x", b"bX", true));
        assert!(!glob_match(b"HELLO", b"hello", false));
        assert!(
            !glob_match(b"[\\A]", b"a", true),
            "escaped class members are case-sensitive"
        );
    }

    #[test]
    fn empty_strings_match_only_the_empty_pattern() {
        assert!(m("", ""));
        assert!(!m("*", "") && !m("**", "") && !m("?", ""));
        assert!(!m("", "a"));
    }

    #[test]
    fn high_bytes_compare_as_signed_chars() {
        // [\x01-\xff]: as signed chars that is [-1, 1] reversed to [-1, 1]: matches \x01 and \xff
        // but not 'a'.
        assert!(glob_match(b"[\x01-\xff]", b"\xff", false));
        assert!(!glob_match(b"[\x01-\xff]", b"a", false));
    }

    /// Redis 7.0.15 against a key of 2000 'a's: `*a` x1000 matches, x1001 does not;
    /// `a*` x1001 matches (its last `*` needs no recursion), x1002 does not.
    #[test]
    fn nesting_limit_matches_redis() {
        let key = vec![b'a'; 2000];
        let rep = |unit: &[u8], n: usize| unit.repeat(n);
        assert!(glob_match(&rep(b"*a", 1000), &key, false));
        assert!(!glob_match(&rep(b"*a", 1001), &key, false));
        assert!(glob_match(&rep(b"a*", 1001), &key, false));
        assert!(!glob_match(&rep(b"a*", 1002), &key, false));
    }

    #[test]
    fn pathological_patterns_finish_quickly() {
        let s = vec![b'a'; 5000];
        let mut p = b"a*".repeat(40);
        p.push(b'b');
        let start = std::time::Instant::now();
        assert!(!glob_match(&p, &s, false));
        assert!(start.elapsed().as_secs() < 2);
    }
}
