//! Checksums that some token formats carry, so a rule can tell a well-formed token from a
//! random string of the same shape.

/// CRC-32 (IEEE 802.3, the one zlib and GitHub use), bitwise: the inputs are a few dozen
/// bytes, so a table would cost more to build than it saves.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `n` in base 62 (digits, upper, lower), left-padded with `0` to `width` characters.
pub fn base62(mut n: u32, width: usize) -> String {
    let mut out = Vec::new();
    while n > 0 {
        out.push(BASE62[(n % 62) as usize]);
        n /= 62;
    }
    while out.len() < width {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// GitHub's token formats (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`) and npm's (`npm_`) end in
/// six base62 characters that encode the CRC-32 of the thirty characters before them.
/// `token` is the whole token, prefix included.
pub fn github_style_checksum_ok(token: &[u8]) -> bool {
    let Some(us) = token.iter().position(|&b| b == b'_') else {
        return false;
    };
    let body = &token[us + 1..];
    if body.len() != 36 {
        return false;
    }
    let (random, check) = body.split_at(30);
    base62(crc32(random), 6).as_bytes() == check
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_values() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn base62_pads_and_encodes() {
        assert_eq!(base62(0, 6), "000000");
        assert_eq!(base62(61, 2), "0z");
        assert_eq!(base62(62, 1), "10");
        assert_eq!(base62(u32::MAX, 6), "4gfFC3");
    }

    #[test]
    fn github_checksum_round_trip() {
        let random = "AbCdEfGhIjKlMnOpQrStUvWxYz0123";
        let token = format!("ghp_{random}{}", base62(crc32(random.as_bytes()), 6));
        assert!(github_style_checksum_ok(token.as_bytes()));
        let mut bad = token.into_bytes();
        bad[10] = if bad[10] == b'a' { b'b' } else { b'a' };
        assert!(!github_style_checksum_ok(&bad));
        assert!(!github_style_checksum_ok(b"ghp_short"));
    }
}
