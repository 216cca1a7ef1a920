//! Durations as operators write them: `90s`, `15m`, `2h`, `1d`, `1h30m`.

use chrono::Duration;

/// Parses a duration; at least one second, at most 366 days.
pub fn parse_duration(s: &str) -> Result<Duration, crate::Error> {
    let bad = || {
        crate::Error::Invalid(format!(
            "invalid duration {s:?}: write it like 90s, 15m, 2h or 1d"
        ))
    };
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: i64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            if num.len() > 9 {
                return Err(bad());
            }
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: i64 = num.parse().map_err(|_| bad())?;
        num.clear();
        total = total
            .checked_add(n.checked_mul(unit).ok_or_else(bad)?)
            .ok_or_else(bad)?;
    }
    if !num.is_empty() || !(1..=366 * 86_400).contains(&total) {
        return Err(bad());
    }
    Ok(Duration::seconds(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::seconds(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::minutes(15));
        assert_eq!(parse_duration("2h").unwrap(), Duration::hours(2));
        assert_eq!(parse_duration("1d").unwrap(), Duration::days(1));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::minutes(90));
    }

    #[test]
    fn rejects_nonsense() {
        for s in [
            "",
            "15",
            "m",
            "0s",
            "-5m",
            "5x",
            "1.5h",
            "999999999999h",
            "400d",
        ] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
    }
}
