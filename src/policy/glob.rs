//! The `*` / `?` wildcard matching of IAM-style patterns (actions, resources, StringLike).

/// Whether `text` matches `pattern`, where `*` matches any run of characters (also empty)
/// and `?` exactly one. Iterative with backtracking to the last `*`: linear in practice,
/// never exponential.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Case-insensitive [`matches`] (IAM actions are case-insensitive).
pub fn matches_ignore_case(pattern: &str, text: &str) -> bool {
    matches(&pattern.to_ascii_lowercase(), &text.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            ("*", "", true),
            ("*", "kms:Decrypt", true),
            ("kms:*", "kms:Decrypt", true),
            ("kms:Gen*", "kms:GenerateDataKey", true),
            ("kms:Gen*", "kms:Decrypt", false),
            ("kms:Generate*Key", "kms:GenerateDataKey", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*.service", "nginx.service", true),
            ("*.service", "nginx.socket", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("", "", true),
            ("", "x", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(matches(pattern, text), expected, "{pattern} vs {text}");
        }
        assert!(matches_ignore_case("KMS:decrypt", "kms:Decrypt"));
    }
}
