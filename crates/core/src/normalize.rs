//! Issuer and audience matching: clients write the same name in several ways.

/// Normalises an issuer or audience: trims, lowercases ASCII, drops an `http://` or `https://`
/// prefix and trailing `/`. `https://App.Example.com/` and `app.example.com` compare equal.
pub fn normalize_name(s: &str) -> String {
    let mut s = s.trim();
    for scheme in ["https://", "http://"] {
        if s.get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
        {
            s = &s[scheme.len()..];
            break;
        }
    }
    s.trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_compare_equal() {
        for v in [
            "app.example.com",
            "https://app.example.com",
            "http://app.example.com/",
            "HTTPS://App.Example.COM//",
            "  app.example.com ",
        ] {
            assert_eq!(normalize_name(v), "app.example.com", "{v}");
        }
    }

    #[test]
    fn keeps_paths_and_ports() {
        assert_eq!(
            normalize_name("https://api.example.com:8443/x/"),
            "api.example.com:8443/x"
        );
        assert_ne!(normalize_name("app.example.com.evil"), "app.example.com");
        assert_eq!(normalize_name("My App"), "my app");
    }
}
