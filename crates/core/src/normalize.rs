//! Issuer and audience matching: clients write the same name in several ways.

/// Normalises an issuer or audience: trims, lowercases ASCII, drops an `http://` or `https://`
/// prefix, trailing `/` and the scheme's default port. `https://App.Example.com:443/`,
/// `api.example.com:443` and `app.example.com` compare equal; so do `http://host:80` and `host`.
/// Any other port is part of the name (`host:8443` is not `host`).
pub fn normalize_name(s: &str) -> String {
    let mut s = s.trim();
    // The ports that mean "no port" for this spelling: the scheme's default, or either default
    // when no scheme is written (the client left the scheme out, not the server).
    let mut defaults: &[u16] = &[443, 80];
    for (scheme, port) in [("https://", &[443u16][..]), ("http://", &[80u16][..])] {
        if s.get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
        {
            s = &s[scheme.len()..];
            defaults = port;
            break;
        }
    }
    let s = s.trim_end_matches('/');
    let (authority, path) = s.split_at(s.find('/').unwrap_or(s.len()));
    let authority = match authority.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty()
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && port.parse::<u16>().is_ok_and(|p| defaults.contains(&p)) =>
        {
            host
        }
        _ => authority,
    };
    let mut out = String::with_capacity(authority.len() + path.len());
    out.push_str(authority);
    out.push_str(path);
    out.make_ascii_lowercase();
    out
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
            "app.example.com:443",
            "https://app.example.com:443",
            "https://app.example.com:443/",
            "app.example.com:80",
            "http://app.example.com:80",
            "HTTP://APP.example.com:080/",
        ] {
            assert_eq!(normalize_name(v), "app.example.com", "{v}");
        }
    }

    #[test]
    fn keeps_paths_and_other_ports() {
        assert_eq!(
            normalize_name("https://api.example.com:8443/x/"),
            "api.example.com:8443/x"
        );
        assert_eq!(
            normalize_name("https://api.example.com:443/x/"),
            "api.example.com/x"
        );
        // A default port of the other scheme is a port like any other.
        assert_eq!(normalize_name("https://host:80"), "host:80");
        assert_eq!(normalize_name("http://host:443"), "host:443");
        assert_eq!(normalize_name("host:8080"), "host:8080");
        assert_eq!(normalize_name("127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(normalize_name("[::1]:443"), "[::1]");
        assert_eq!(normalize_name("[::1]"), "[::1]");
        assert_eq!(normalize_name("host:+443"), "host:+443");
        assert_eq!(normalize_name(":443"), ":443");
        assert_ne!(normalize_name("app.example.com.evil"), "app.example.com");
        assert_eq!(normalize_name("My App"), "my app");
    }
}
