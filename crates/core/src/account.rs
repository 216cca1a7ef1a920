//! Account identity: when two spellings of a name are the same account.
//!
//! Identity providers compare user names without case (Active Directory, Cognito pools by
//! default, most email logins) and pass on what the user typed, in whatever case and Unicode
//! form. An application's `account_names` setting says how Deadbolt compares them: after NFC
//! and full case folding (the default), or byte for byte. Every lookup of an account goes
//! through an [`AccountKey`] made here, so no path can compare raw names by mistake.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// How an application compares account names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AccountNames {
    /// Compared after Unicode NFC and full case folding: `Alice`, `alice` and `ALİCE`'s
    /// folded forms meet; the NFC and NFD spellings of `café` are one name.
    #[default]
    #[serde(rename = "case-insensitive")]
    CaseInsensitive,
    /// Compared byte for byte, for the rare application whose names differ by case.
    #[serde(rename = "exact")]
    Exact,
}

impl AccountNames {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CaseInsensitive => "case-insensitive",
            Self::Exact => "exact",
        }
    }

    /// The key `name` is found by in an application with this setting.
    pub fn key(self, name: &str) -> AccountKey {
        match self {
            Self::Exact => AccountKey(name.to_string()),
            Self::CaseInsensitive => AccountKey(fold(name).into_owned()),
        }
    }
}

impl fmt::Display for AccountNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AccountNames {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "case-insensitive" => Ok(Self::CaseInsensitive),
            "exact" => Ok(Self::Exact),
            _ => Err(crate::Error::Invalid(format!(
                "invalid account names setting {s:?}: expected case-insensitive or exact"
            ))),
        }
    }
}

/// The form of an account name that lookups compare. Made only by [`AccountNames::key`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountKey(String);

impl AccountKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::borrow::Borrow<str> for AccountKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// NFC, then full case folding, then NFC again (folding can leave a string unnormalised).
/// ASCII, by far the common case, is only lowercased and allocates only when it has capitals.
fn fold(name: &str) -> Cow<'_, str> {
    if name.is_ascii() {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Cow::Owned(name.to_ascii_lowercase());
        }
        return Cow::Borrowed(name);
    }
    let nfc: String = name.nfc().collect();
    let folded = caseless::default_case_fold_str(&nfc);
    if is_nfc_quick(folded.chars()) == IsNormalized::Yes {
        Cow::Owned(folded)
    } else {
        Cow::Owned(folded.nfc().collect())
    }
}

/// A character an account name may not hold, with where it is and what it is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusedChar {
    /// Position in characters, from 1.
    pub position: usize,
    pub ch: char,
    pub name: &'static str,
}

impl fmt::Display for RefusedChar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "U+{:04X} {} at character {}",
            u32::from(self.ch),
            self.name,
            self.position
        )
    }
}

/// The first character that makes `name` unfit as an account name: control characters,
/// bidirectional overrides and marks, and invisible (zero-width) characters. Each lets two
/// names look the same to a person while differing to a machine, which is how one account
/// becomes two.
pub fn refused_char(name: &str) -> Option<RefusedChar> {
    name.chars().enumerate().find_map(|(i, ch)| {
        refused_name(ch).map(|name| RefusedChar {
            position: i + 1,
            ch,
            name,
        })
    })
}

fn refused_name(ch: char) -> Option<&'static str> {
    Some(match ch {
        '\u{200B}' => "ZERO WIDTH SPACE",
        '\u{200C}' => "ZERO WIDTH NON-JOINER",
        '\u{200D}' => "ZERO WIDTH JOINER",
        '\u{2060}' => "WORD JOINER",
        '\u{FEFF}' => "ZERO WIDTH NO-BREAK SPACE",
        '\u{180E}' => "MONGOLIAN VOWEL SEPARATOR",
        '\u{00AD}' => "SOFT HYPHEN",
        '\u{034F}' => "COMBINING GRAPHEME JOINER",
        '\u{2061}'..='\u{2064}' => "invisible operator",
        '\u{200E}' => "LEFT-TO-RIGHT MARK",
        '\u{200F}' => "RIGHT-TO-LEFT MARK",
        '\u{061C}' => "ARABIC LETTER MARK",
        '\u{202A}' => "LEFT-TO-RIGHT EMBEDDING",
        '\u{202B}' => "RIGHT-TO-LEFT EMBEDDING",
        '\u{202C}' => "POP DIRECTIONAL FORMATTING",
        '\u{202D}' => "LEFT-TO-RIGHT OVERRIDE",
        '\u{202E}' => "RIGHT-TO-LEFT OVERRIDE",
        '\u{2066}' => "LEFT-TO-RIGHT ISOLATE",
        '\u{2067}' => "RIGHT-TO-LEFT ISOLATE",
        '\u{2068}' => "FIRST STRONG ISOLATE",
        '\u{2069}' => "POP DIRECTIONAL ISOLATE",
        '\u{FFF9}'..='\u{FFFB}' => "interlinear annotation character",
        '\u{E0000}'..='\u{E007F}' => "tag character",
        c if c.is_control() => "(a control character)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ci(s: &str) -> String {
        AccountNames::CaseInsensitive.key(s).into_string()
    }

    #[test]
    fn case_and_unicode_forms_meet() {
        assert_eq!(ci("Alice@Contoso.com"), ci("alice@contoso.com"));
        assert_eq!(ci("ALICE"), "alice");
        // NFC (U+00E9) and NFD (e + U+0301) spellings of café.
        assert_eq!(ci("caf\u{e9}"), ci("cafe\u{301}"));
        assert_eq!(ci("CAFE\u{301}"), ci("caf\u{e9}"));
        // Full case folding, not just lowercasing: ß and ẞ fold to "ss"; final sigma to sigma.
        assert_eq!(ci("stra\u{df}e"), ci("STRASSE"));
        assert_eq!(ci("\u{1e9e}"), "ss");
        assert_eq!(ci("\u{3a3}\u{3c2}"), ci("\u{3c3}\u{3c3}"));
        // Different names stay different.
        assert_ne!(ci("alice"), ci("alicia"));
        assert_ne!(ci("caf\u{e9}"), ci("cafe"));
    }

    #[test]
    fn exact_keeps_bytes() {
        let e = |s: &str| AccountNames::Exact.key(s).into_string();
        assert_ne!(e("Alice"), e("alice"));
        assert_eq!(e("Alice"), "Alice");
        assert_ne!(e("caf\u{e9}"), e("cafe\u{301}"));
    }

    #[test]
    fn ascii_fold_borrows_when_nothing_changes() {
        assert!(matches!(fold("alice@example.com"), Cow::Borrowed(_)));
        assert!(matches!(fold("Alice"), Cow::Owned(_)));
    }

    #[test]
    fn refused_characters_are_named() {
        let r = refused_char("ali\u{200B}ce").unwrap();
        assert_eq!(r.position, 4);
        assert_eq!(r.to_string(), "U+200B ZERO WIDTH SPACE at character 4");
        assert_eq!(
            refused_char("\u{202E}ecila").unwrap().name,
            "RIGHT-TO-LEFT OVERRIDE"
        );
        assert!(refused_char("a\u{0}b").is_some());
        assert!(refused_char("a\nb").is_some());
        assert!(refused_char("a\u{7f}").is_some());
        assert!(refused_char("\u{feff}alice").is_some());
        for ok in [
            "alice",
            "caf\u{e9}",
            "\u{5d0}\u{5d1}",
            "José García",
            "user+tag@x.io",
        ] {
            assert_eq!(refused_char(ok), None, "{ok}");
        }
    }

    #[test]
    fn setting_round_trips() {
        for m in [AccountNames::CaseInsensitive, AccountNames::Exact] {
            assert_eq!(m.as_str().parse::<AccountNames>().unwrap(), m);
        }
        assert!("insensitive".parse::<AccountNames>().is_err());
        assert_eq!(AccountNames::default(), AccountNames::CaseInsensitive);
    }
}
