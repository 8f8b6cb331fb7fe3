//! Token caching shared by every credential: one token per scope set, refreshed ahead of expiry,
//! at most one refresh in flight per scope set, and a still-valid token kept when a refresh fails.
//!
//! The identity provider is called outside the cache's lock: while one caller refreshes,
//! callers whose token is still valid get it at once instead of queueing behind the refresh.
//! Failed refreshes back off exponentially (1 s doubling to 5 min): during an Entra ID outage
//! callers get the cached token while it lasts, then the last error at once, and the provider
//! sees one attempt per backoff step rather than one per ARM request.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::auth::{AccessToken, TokenCredential};
use time::OffsetDateTime;

/// Something that can fetch a fresh token (no caching of its own).
#[async_trait]
pub trait TokenSource: Send + Sync + fmt::Debug {
    async fn fetch(&self, scopes: &[&str]) -> azure_core::Result<AccessToken>;
}

/// First wait after a failed refresh; it doubles per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between two refresh attempts of one scope set.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

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

/// What is known of one scope set.
#[derive(Debug, Default)]
struct Entry {
    cached: Option<Cached>,
    /// Refreshes failed in a row.
    failures: u32,
    /// No refresh before this (after a failure).
    not_before: Option<OffsetDateTime>,
    last_error: Option<String>,
    /// Held by the one caller refreshing this scope set.
    refreshing: Arc<tokio::sync::Mutex<()>>,
}

/// What a caller does, decided under the lock.
enum Next {
    Token(AccessToken),
    Fail(String),
    Refresh(Arc<tokio::sync::Mutex<()>>),
}

fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

/// Wraps a [`TokenSource`] with a cache; this is what the pipeline gets as `TokenCredential`.
pub struct CachingCredential<S> {
    source: S,
    max_margin: Duration,
    cache: std::sync::Mutex<HashMap<String, Entry>>,
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
            cache: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decide, without waiting: a fresh token, a fast failure, or a refresh to make.
    /// `gate_free` says whether nobody else is refreshing this scope set right now.
    fn next(&self, key: &str, gate_free: bool) -> Next {
        let now = OffsetDateTime::now_utc();
        let mut entries = self.entries();
        let entry = entries.entry(key.to_string()).or_default();
        let valid = entry
            .cached
            .as_ref()
            .filter(|c| now < c.token.expires_on)
            .map(|c| c.token.clone());
        let due = entry
            .cached
            .as_ref()
            .is_none_or(|c| now >= c.refresh_at(self.max_margin));
        match (valid, due) {
            (Some(token), false) => Next::Token(token),
            // Due for refresh but still valid: whoever is not refreshing keeps using it.
            (Some(token), true) if !gate_free => Next::Token(token),
            (Some(token), true) if entry.not_before.is_some_and(|t| now < t) => Next::Token(token),
            (None, _) if entry.not_before.is_some_and(|t| now < t) => Next::Fail(format!(
                "getting a token failed {} time(s) in a row, next attempt in {:.1}s: {}",
                entry.failures,
                entry
                    .not_before
                    .map_or(0.0, |t| (t - now).as_seconds_f64().max(0.0)),
                entry.last_error.as_deref().unwrap_or("unknown error")
            )),
            _ => Next::Refresh(entry.refreshing.clone()),
        }
    }
}

#[async_trait]
impl<S: TokenSource> TokenCredential for CachingCredential<S> {
    async fn get_token(&self, scopes: &[&str]) -> azure_core::Result<AccessToken> {
        let key = scopes.join(" ");
        let gate = match self.next(&key, true) {
            Next::Token(t) => return Ok(t),
            Next::Fail(why) => return Err(credential_error(why)),
            Next::Refresh(gate) => gate,
        };
        // One refresh at a time per scope set; a caller whose token is still valid does not
        // wait for it.
        let _refreshing = match gate.clone().try_lock_owned() {
            Ok(g) => g,
            Err(_) => {
                if let Next::Token(t) = self.next(&key, false) {
                    return Ok(t);
                }
                let g = gate.lock_owned().await;
                // Whoever held the gate may have refreshed (or failed) meanwhile.
                match self.next(&key, true) {
                    Next::Token(t) => return Ok(t),
                    Next::Fail(why) => return Err(credential_error(why)),
                    Next::Refresh(_) => g,
                }
            }
        };
        let now = OffsetDateTime::now_utc();
        let fetched = self.source.fetch(scopes).await;
        let mut entries = self.entries();
        let entry = entries.entry(key).or_default();
        match fetched {
            Ok(token) => {
                entry.cached = Some(Cached {
                    token: token.clone(),
                    fetched_at: now,
                });
                entry.failures = 0;
                entry.not_before = None;
                entry.last_error = None;
                Ok(token)
            }
            Err(e) => {
                entry.failures = entry.failures.saturating_add(1);
                let wait = backoff(entry.failures);
                entry.not_before = Some(OffsetDateTime::now_utc() + wait);
                entry.last_error = Some(e.to_string());
                match &entry.cached {
                    Some(cached) if OffsetDateTime::now_utc() < cached.token.expires_on => {
                        tracing::warn!(error = %e, retry_in = ?wait, "token refresh failed; using the cached token until it expires");
                        Ok(cached.token.clone())
                    }
                    _ => {
                        tracing::warn!(error = %e, retry_in = ?wait, "getting a token failed");
                        Err(e)
                    }
                }
            }
        }
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        self.entries().clear();
        Ok(())
    }
}

fn credential_error(message: String) -> azure_core::Error {
    azure_core::Error::message(azure_core::error::ErrorKind::Credential, message)
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

    /// A source whose refreshes (every fetch after the first) wait until released.
    #[derive(Debug)]
    struct Gated {
        calls: AtomicU32,
        release: tokio::sync::Notify,
        lifetime: Duration,
    }

    #[async_trait]
    impl TokenSource for Gated {
        async fn fetch(&self, _scopes: &[&str]) -> azure_core::Result<AccessToken> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n > 0 {
                self.release.notified().await;
            }
            Ok(AccessToken::new(
                format!("t{n}"),
                OffsetDateTime::now_utc() + self.lifetime,
            ))
        }
    }

    #[tokio::test]
    async fn callers_with_a_valid_token_do_not_wait_for_a_refresh() {
        let c = Arc::new(CachingCredential::new(Gated {
            calls: AtomicU32::new(0),
            release: tokio::sync::Notify::new(),
            lifetime: Duration::from_secs(4),
        }));
        let first = c.get_token(&["s"]).await.unwrap();
        // Past the half-life refresh point, well before expiry.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let refresher = {
            let c = c.clone();
            tokio::spawn(async move { c.get_token(&["s"]).await })
        };
        while c.source().calls.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The refresh hangs (a slow identity provider); the valid token is served meanwhile.
        let during = tokio::time::timeout(Duration::from_millis(500), c.get_token(&["s"]))
            .await
            .expect("a caller with a valid token must not queue behind a refresh")
            .unwrap();
        assert_eq!(during.token.secret(), first.token.secret());
        c.source().release.notify_one();
        let refreshed = refresher.await.unwrap().unwrap();
        assert_eq!(refreshed.token.secret(), "t1");
        assert_eq!(c.source().calls.load(Ordering::SeqCst), 2);
    }

    #[derive(Debug)]
    struct Down {
        calls: AtomicU32,
    }

    #[async_trait]
    impl TokenSource for Down {
        async fn fetch(&self, _scopes: &[&str]) -> azure_core::Result<AccessToken> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Err(azure_core::Error::message(
                azure_core::error::ErrorKind::Credential,
                "identity provider down",
            ))
        }
    }

    #[tokio::test]
    async fn an_outage_backs_off_instead_of_asking_per_request() {
        let c = CachingCredential::new(Down {
            calls: AtomicU32::new(0),
        });
        for _ in 0..20 {
            let e = c.get_token(&["s"]).await.unwrap_err();
            assert!(e.to_string().contains("identity provider down"), "{e}");
        }
        assert_eq!(
            c.source().calls.load(Ordering::SeqCst),
            1,
            "one attempt, then callers fail fast until the backoff ends"
        );
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
