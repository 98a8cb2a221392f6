//! Whether a session key file plausibly holds 32 bytes (256 bits) of secret.
//!
//! No test can prove a string random; this one catches the keys people
//! actually write by mistake (a placeholder, a repeated character, a pattern
//! typed out, a hex or base64 key cut short) while letting every key made the
//! README's way through (`head -c 32 /dev/urandom | base64`, `openssl rand
//! -hex 32`, 32 raw random bytes). The key is credited as if it were random
//! over the smallest alphabet it is written in (hex digits: 4 bits a character,
//! base64: 6, printable ASCII: log2 of the character classes it uses, any other
//! byte: 8), and then must not look less varied than a random string of that
//! alphabet and length would, by a wide margin: neither in the symbols it uses,
//! nor in the steps from one symbol to the next, nor by repeating itself.

/// Bits of secret a session key must hold: HMAC-SHA256's key size.
pub const MIN_KEY_BITS: f64 = 256.0;

/// Why a key was refused, for the start-up error.
#[derive(Debug, Clone, PartialEq)]
pub enum Weak {
    /// Too short for its alphabet: about `bits` bits at most.
    Short { alphabet: &'static str, bits: f64 },
    /// Long enough, but far less varied than a random key: a pattern.
    Patterned,
}

impl std::fmt::Display for Weak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Weak::Short { alphabet, bits } => write!(
                f,
                "written in {alphabet}, it holds at most {bits:.0} bits of secret; \
                 {MIN_KEY_BITS:.0} are needed"
            ),
            Weak::Patterned => {
                f.write_str("it repeats itself or follows a pattern, as no random key would")
            }
        }
    }
}

/// Checks the key as read from its file, surrounding white space removed.
pub fn check(key: &[u8]) -> Result<(), Weak> {
    let symbols = symbols(key);
    let (alphabet, size) = alphabet(&symbols);
    let bits = symbols.len() as f64 * f64::from(size).log2();
    if bits < MIN_KEY_BITS {
        return Err(Weak::Short { alphabet, bits });
    }
    let distinct = |values: &mut dyn Iterator<Item = i32>| {
        let mut seen = [false; 512];
        values.for_each(|v| seen[(v + 256) as usize] = true);
        seen.iter().filter(|s| **s).count() as f64
    };
    let n = symbols.len();
    let used = distinct(&mut symbols.iter().map(|&b| i32::from(b)));
    let steps = distinct(
        &mut symbols
            .windows(2)
            .map(|w| i32::from(w[1]) - i32::from(w[0])),
    );
    // Half of what a random key shows on average: a random key of the
    // lengths that pass above falls that short with odds far below 1e-12.
    if used < expected_distinct(size, n) / 2.0
        || steps < expected_distinct(size, n - 1) / 2.0
        || repeats_itself(&symbols)
    {
        return Err(Weak::Patterned);
    }
    Ok(())
}

/// The characters that carry the secret: base64's trailing padding carries none.
fn symbols(key: &[u8]) -> Vec<u8> {
    let body = key
        .strip_suffix(b"==")
        .or(key.strip_suffix(b"="))
        .unwrap_or(key);
    if is_base64(body) {
        body.to_vec()
    } else {
        key.to_vec()
    }
}

fn is_base64(s: &[u8]) -> bool {
    let standard = s
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    let url_safe = s
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    !s.is_empty() && (standard || url_safe)
}

/// The smallest alphabet the key is written in: its name and its size.
fn alphabet(symbols: &[u8]) -> (&'static str, u32) {
    if symbols.iter().all(u8::is_ascii_hexdigit) {
        return ("hex", 16);
    }
    if is_base64(symbols) {
        return ("base64", 64);
    }
    if !symbols.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        return ("raw bytes", 256);
    }
    let has = |class: fn(&u8) -> bool| symbols.iter().any(class);
    let size = [
        (has(u8::is_ascii_lowercase), 26),
        (has(u8::is_ascii_uppercase), 26),
        (has(u8::is_ascii_digit), 10),
        (has(|b| b.is_ascii_punctuation() || *b == b' '), 33),
    ]
    .iter()
    .filter(|(present, _)| *present)
    .map(|(_, size)| size)
    .sum();
    ("text", size)
}

/// How many distinct symbols `n` random draws from `size` show on average.
fn expected_distinct(size: u32, n: usize) -> f64 {
    let size = f64::from(size);
    size * (1.0 - (1.0 - 1.0 / size).powi(n as i32))
}

/// Whether the key is a shorter piece written out again and again.
fn repeats_itself(symbols: &[u8]) -> bool {
    (1..=symbols.len() / 2)
        .any(|period| symbols.iter().zip(&symbols[period..]).all(|(a, b)| a == b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use password_hash::rand_core::{OsRng, RngCore};

    fn random(n: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; n];
        OsRng.fill_bytes(&mut bytes);
        bytes
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn keys_made_the_readme_way_are_accepted_every_time() {
        for _ in 0..2_000 {
            let bytes = random(32);
            let base64 = STANDARD.encode(&bytes);
            assert_eq!(check(base64.as_bytes()), Ok(()), "{base64}");
            assert_eq!(check(hex(&bytes).as_bytes()), Ok(()), "{}", hex(&bytes));
            let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
            assert_eq!(check(url_safe.as_bytes()), Ok(()), "{url_safe}");
        }
    }

    #[test]
    fn raw_random_bytes_and_long_random_text_are_accepted() {
        for _ in 0..2_000 {
            // As read from the file: white space at the ends is trimmed off.
            let raw = random(40);
            let raw = raw.trim_ascii();
            if raw.len() >= 32 {
                assert_eq!(check(raw), Ok(()), "{raw:?}");
            }
            let printable: Vec<u8> = random(48).iter().map(|b| b'!' + b % 94).collect();
            assert_eq!(check(&printable), Ok(()), "{printable:?}");
        }
    }

    #[test]
    fn thirty_two_times_the_same_character_is_refused() {
        assert!(matches!(check(&[b'a'; 32]), Err(Weak::Short { .. })));
        assert_eq!(check(&[b'a'; 200]), Err(Weak::Patterned));
        assert_eq!(check(&[b'Z'; 200]), Err(Weak::Patterned));
        assert_eq!(check(&[0u8; 64]), Err(Weak::Patterned));
    }

    #[test]
    fn keys_short_for_their_alphabet_are_refused_naming_it() {
        // 16 random bytes as hex: 32 characters, 128 bits.
        let short_hex = hex(&random(16));
        let err = check(short_hex.as_bytes()).unwrap_err();
        assert!(
            matches!(err, Weak::Short { alphabet: "hex", bits } if bits == 128.0),
            "{err:?}"
        );
        assert!(err.to_string().contains("128 bits"), "{err}");
        // 24 random bytes as base64: 192 bits.
        let short_base64 = STANDARD.encode(random(24));
        assert!(matches!(
            check(short_base64.as_bytes()),
            Err(Weak::Short {
                alphabet: "base64",
                ..
            })
        ));
        // A made-up phrase, long as it is, is lower case, digits and dashes.
        assert!(check(b"shared-by-both-instances-0123456789abcdef").is_err());
        assert!(check(b"correct horse battery staple").is_err());
    }

    #[test]
    fn patterns_long_enough_to_pass_on_length_are_refused() {
        let patterns: [&[u8]; 5] = [
            b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            b"abababababababababababababababababababababababababababababababab",
            b"deadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeef",
            b"!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abc",
        ];
        for p in patterns {
            assert_eq!(check(p), Err(Weak::Patterned), "{}", p.escape_ascii());
        }
        // A random key written out twice is a pattern too.
        let half = STANDARD.encode(random(24));
        let twice = format!("{half}{half}");
        assert_eq!(check(twice.as_bytes()), Err(Weak::Patterned), "{twice}");
    }
}
