//! API keys found by their hash, kept in memory for a short while: on Lambda every request
//! would otherwise read the key from DynamoDB, a call and a few milliseconds each. Only keys
//! that exist are kept (a key just created works at once); a revoked or expired one is refused
//! once its entry is older than the time to live, which is how long a revocation may take to
//! reach a warm function. A time to live of zero keeps nothing (`tidings serve`: revocation at
//! once).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::ApiKey;
use crate::ports::KeyStore;
use crate::Result;

/// At most this many keys are kept; past it the cache starts again empty (keys are few).
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Default)]
pub struct KeyCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (ApiKey, Instant)>>,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> KeyCache {
        KeyCache { ttl, entries: Mutex::default() }
    }

    /// The key with this hash: from memory if it was read less than the time to live ago.
    pub async fn find(&self, store: &dyn KeyStore, hash: &str) -> Result<Option<ApiKey>> {
        if self.ttl.is_zero() {
            return store.find_api_key_by_hash(hash).await;
        }
        if let Some((key, read_at)) = self.entries.lock().expect("key cache lock").get(hash) {
            if read_at.elapsed() < self.ttl {
                return Ok(Some(key.clone()));
            }
        }
        let found = store.find_api_key_by_hash(hash).await?;
        let mut entries = self.entries.lock().expect("key cache lock");
        match &found {
            Some(key) => {
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
                entries.insert(hash.to_owned(), (key.clone(), Instant::now()));
            }
            None => {
                entries.remove(hash);
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use time::OffsetDateTime;
    use uuid::Uuid;

    use super::*;
    use crate::domain::{NewApiKey, OrganizationId};

    /// One key; counts the reads.
    struct OneKey(ApiKey, AtomicUsize);

    #[async_trait]
    impl KeyStore for OneKey {
        async fn put_api_key(&self, _: &ApiKey) -> Result<()> {
            Ok(())
        }
        async fn find_api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
            self.1.fetch_add(1, Ordering::SeqCst);
            Ok((hash == self.0.hash).then(|| self.0.clone()))
        }
        async fn list_api_keys(&self, _: Option<OrganizationId>) -> Result<Vec<ApiKey>> {
            Ok(vec![])
        }
        async fn revoke_api_key(&self, _: Uuid, _: OffsetDateTime) -> Result<bool> {
            Ok(false)
        }
    }

    #[tokio::test]
    async fn keys_are_read_once_per_time_to_live_and_unknown_ones_every_time() {
        let key = NewApiKey::generate(OrganizationId(Uuid::nil()), vec![], OffsetDateTime::now_utc(), None).record;
        let store = OneKey(key.clone(), AtomicUsize::new(0));
        let cache = KeyCache::new(Duration::from_millis(200));
        for _ in 0..3 {
            assert_eq!(cache.find(&store, &key.hash).await.unwrap(), Some(key.clone()));
        }
        assert_eq!(store.1.load(Ordering::SeqCst), 1);
        for _ in 0..2 {
            assert_eq!(cache.find(&store, "unknown").await.unwrap(), None);
        }
        assert_eq!(store.1.load(Ordering::SeqCst), 3, "a missing key is not remembered");
        tokio::time::sleep(Duration::from_millis(250)).await;
        cache.find(&store, &key.hash).await.unwrap();
        assert_eq!(store.1.load(Ordering::SeqCst), 4, "read again after the time to live");

        let uncached = KeyCache::new(Duration::ZERO);
        uncached.find(&store, &key.hash).await.unwrap();
        uncached.find(&store, &key.hash).await.unwrap();
        assert_eq!(store.1.load(Ordering::SeqCst), 6);
    }
}
