//! Character rules shared by the values that end up in paths, Containerfiles and command lines.

/// Exactly `len` lowercase hex digits: commit hashes, sha256 sums.
pub(crate) fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// A plain name (package file, dkms name or version): letters, digits and `. _ + - ~`, not starting with
/// `-` or `.` (no option, no hidden file, no `..`). What the message for a refusal says is allowed.
pub(crate) fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(['-', '.'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-~".contains(c))
}

pub(crate) const PLAIN_NAME_RULE: &str = "only letters, digits and . _ + - ~ (not first: - or .)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_needs_the_exact_length_and_lowercase() {
        assert!(is_lower_hex("0123abcd", 8));
        assert!(!is_lower_hex("0123ABCD", 8));
        assert!(!is_lower_hex("0123abc", 8));
        assert!(!is_lower_hex("0123abcg", 8));
    }

    #[test]
    fn plain_names_keep_out_options_paths_and_shell() {
        assert!(is_plain_name("kernel-core-6.11.4-301.fc41.x86_64.rpm"));
        assert!(is_plain_name(
            "linux-image-6.1.0-50-cloud-amd64_6.1.176-1_amd64.deb"
        ));
        for bad in ["", "-rf", ".hidden", "a/b", "a b", "a;b", "$x"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
    }
}
