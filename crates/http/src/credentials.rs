//! Bearer credentials (RFC 6750) and comparing secrets without leaking them by timing.

use subtle::ConstantTimeEq;

/// The token of a `Bearer` credential (the scheme is case-insensitive, RFC 9110), if it
/// is one and the token is not empty.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Constant time in the secret's content, so response timing does not reveal how much
/// of a guess was right (the length may leak; it is not the secret part).
pub fn tokens_match(presented: &str, expected: &str) -> bool {
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_credentials() {
        assert_eq!(bearer_token("Bearer k"), Some("k"));
        assert_eq!(bearer_token("bearer  k "), Some("k"));
        assert_eq!(bearer_token("Bearer "), None, "an empty token is no token");
        assert_eq!(bearer_token("Bearer    "), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Basic k"), None);
        assert_eq!(bearer_token("k"), None);
    }

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(tokens_match("s3cret", "s3cret"));
        assert!(!tokens_match("s3cre", "s3cret"));
        assert!(!tokens_match("s3creT", "s3cret"));
        assert!(!tokens_match("", "s3cret"));
    }
}
