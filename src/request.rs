//! What a caller asks for: an access token for scopes, or an ID token for an audience.

use crate::token::TokenKind;

/// Google's default scope when none is given.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A token request; also the per-credential half of the cache key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TokenRequest {
    /// OAuth2 access token; scopes are kept sorted and de-duplicated.
    Access { scopes: Vec<String> },
    /// OIDC ID token whose `aud` claim is `audience`.
    Id { audience: String },
}

impl TokenRequest {
    /// An access-token request; empty scopes mean cloud-platform.
    pub fn access<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut scopes: Vec<String> = scopes
            .into_iter()
            .map(Into::into)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if scopes.is_empty() {
            scopes.push(CLOUD_PLATFORM.to_owned());
        }
        scopes.sort();
        scopes.dedup();
        TokenRequest::Access { scopes }
    }

    pub fn id(audience: impl Into<String>) -> Self {
        TokenRequest::Id {
            audience: audience.into(),
        }
    }

    pub fn kind(&self) -> TokenKind {
        match self {
            TokenRequest::Access { .. } => TokenKind::Access,
            TokenRequest::Id { .. } => TokenKind::Id,
        }
    }

    /// Scopes joined by spaces, as the OAuth2 `scope` parameter wants them.
    pub fn scope_param(&self) -> Option<String> {
        match self {
            TokenRequest::Access { scopes } => Some(scopes.join(" ")),
            TokenRequest::Id { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_sorted_deduplicated_and_default_to_cloud_platform() {
        assert_eq!(
            TokenRequest::access(["b", "a", "b"]),
            TokenRequest::Access {
                scopes: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(
            TokenRequest::access(Vec::<String>::new())
                .scope_param()
                .unwrap(),
            CLOUD_PLATFORM
        );
    }
}
