//! A configured secret (an API key, a signing secret, a token): its `Debug` prints
//! `[redacted]`, so a config struct that derives `Debug` can be logged whole without
//! leaking it. No `Display`, so formatting it by mistake does not compile (and does not
//! silently print `[redacted]` where the value was meant). Comparing it with what a
//! client presented takes constant time in the content.

use std::fmt;

use subtle::ConstantTimeEq;

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it (signing, a client header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this secret. Constant time in the content (only the
    /// length can show), so response timing does not reveal how much of a guess matched.
    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self(value.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_itself() {
        let secret = Secret::new("hunter2-secret");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert!(!format!("{:?}", Some(("a", secret.clone()))).contains("hunter2"));
        assert_eq!(secret.expose(), "hunter2-secret");
    }

    #[test]
    fn matches_only_the_exact_secret() {
        let secret = Secret::new("key-aaaaaaaa");
        assert!(secret.matches("key-aaaaaaaa"));
        assert!(!secret.matches("key-aaaaaaab"));
        assert!(!secret.matches("key-aaaaaaa"));
        assert!(!secret.matches(""));
    }
}
