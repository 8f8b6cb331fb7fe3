//! Token caching shared by every credential: one token per scope set, refreshed ahead of expiry,
//! at most one refresh in flight, and a still-valid token kept when a refresh fails.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::auth::{AccessToken, TokenCredential};
use time::OffsetDateTime;
use tokio::sync::Mutex;

/// Something that can fetch a fresh token (no caching of its own).
#[async_trait]
pub trait TokenSource: Send + Sync + fmt::Debug {
    async fn fetch(&self, scopes: &[&str]) -> azure_core::Result<AccessToken>;
}

#[derive(Debug, Clone)]
struct Cached {
    token: AccessToken,
    fetched_at: OffsetDateTime,
}

impl Cached {
    /// Refresh this far before expiry: five minutes, or half the lifetime for short-lived tokens.
    fn refresh_at(&self, max_margin: Duration) -> OffsetDateTime {
        let lifetime_ms = (self.token.expires_on - self.fetched_at)
            .whole_milliseconds()
            .max(0);
        let half = Duration::from_millis(u64::try_from(lifetime_ms / 2).unwrap_or(u64::MAX));
        self.token.expires_on - half.min(max_margin)
    }
}

/// Wraps a [`TokenSource`] with a cache; this is what the pipeline gets as `TokenCredential`.
pub struct CachingCredential<S> {
    source: S,
    max_margin: Duration,
    cache: Mutex<HashMap<String, Cached>>,
}

impl<S: fmt::Debug> fmt::Debug for CachingCredential<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingCredential")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl<S: TokenSource> CachingCredential<S> {
    pub fn new(source: S) -> Self {
        CachingCredential {
            source,
            max_margin: Duration::from_secs(300),
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn source(&self) -> &S {
        &self.source
    }
}

#[async_trait]
impl<S: TokenSource> TokenCredential for CachingCredential<S> {
    async fn get_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let key = scopes.join(" ");
        // Holding the lock across the fetch makes concurrent callers wait for one refresh instead
        // of each asking the identity provider.
        let mut cache = self.cache.lock().await;
        let now = OffsetDateTime::now_utc();
        if let Some(cached) = cache.get(&key)
            && now < cached.refresh_at(self.max_margin)
        {
            return Ok(cached.token.clone());
        }
        match self.source.fetch(scopes).await {
            Ok(token) => {
                cache.insert(
                    key,
                    Cached {
                        token: token.clone(),
                        fetched_at: now,
                    },
                );
                Ok(token)
            }
            Err(e) => match cache.get(&key) {
                Some(cached) if now < cached.token.expires_on => {
                    tracing::warn!(error = %e, "token refresh failed; using the cached token until it expires");
                    Ok(cached.token.clone())
                }
                _ => Err(e),
            },
        }
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        self.cache.lock().await.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct Counting {
        calls: AtomicU32,
        lifetime: Duration,
        fail_after_first: bool,
    }

    #[async_trait]
    impl TokenSource for Counting {
        async fn fetch(&self, _scopes: &[&str]) -> azure_core::Result<AccessToken> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail_after_first && n > 0 {
                return Err(azure_core::Error::message(
                    azure_core::error::ErrorKind::Credential,
                    "identity provider down",
                ));
            }
            Ok(AccessToken::new(
                format!("t{n}"),
                OffsetDateTime::now_utc() + self.lifetime,
            ))
        }
    }

    fn counting(lifetime: Duration, fail_after_first: bool) -> CachingCredential<Counting> {
        CachingCredential::new(Counting {
            calls: AtomicU32::new(0),
            lifetime,
            fail_after_first,
        })
    }

    #[tokio::test]
    async fn caches_per_scope_until_refresh_time() {
        let c = counting(Duration::from_secs(3600), false);
        let a = c.get_token(&["s1"]).await.unwrap();
        let b = c.get_token(&["s1"]).await.unwrap();
        assert_eq!(a.token.secret(), b.token.secret());
        c.get_token(&["s2"]).await.unwrap();
        assert_eq!(c.source().calls.load(Ordering::SeqCst), 2);
        c.clear_cache().await.unwrap();
        c.get_token(&["s1"]).await.unwrap();
        assert_eq!(c.source().calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn short_lived_tokens_are_refreshed_at_half_life() {
        let c = counting(Duration::from_millis(200), false);
        let first = c.get_token(&["s"]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        let second = c.get_token(&["s"]).await.unwrap();
        assert_ne!(first.token.secret(), second.token.secret());
    }

    #[tokio::test]
    async fn keeps_a_valid_token_when_refresh_fails() {
        let c = counting(Duration::from_millis(1500), true);
        let first = c.get_token(&["s"]).await.unwrap();
        // Past the half-life refresh point, before expiry.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let second = c.get_token(&["s"]).await.unwrap();
        assert_eq!(first.token.secret(), second.token.secret());
        assert_eq!(
            c.source().calls.load(Ordering::SeqCst),
            2,
            "a refresh was tried"
        );
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(c.get_token(&["s"]).await.is_err());
    }
}
