//! Abuse limits: token buckets per identity and policy, shared by all of Envoy's workers.
//!
//! Sans-IO: the buckets live in a [`Store`] the glue backs with proxy-wasm shared data (one per
//! Envoy process, every worker sees it, a write carries the compare-and-swap token of the read
//! it is based on). [`Limiter::take`] reads a bucket, refills it for the time that passed, takes
//! the cost, and writes it back only if nobody wrote in between; on a CAS mismatch it reads
//! again. A [`Store`] in memory ([`MemoryStore`]) drives the same code in tests, including
//! interleaved "workers".
//!
//! A bucket holds `capacity` tokens and refills at `capacity` per minute: a caller may spend a
//! minute's allowance at once, then as fast as it refills. Below `warn_at` of the allowance left,
//! [`Taken::warn`] marks the request (a sustained volume that looks like extraction) before
//! anything is refused.

/// A refill rate: `per_minute` tokens a minute, and as many in the bucket at most.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens per minute, and the bucket's capacity.
    pub per_minute: f64,
}

/// The shared state the buckets live in.
pub trait Store {
    /// The value under `key` and the token a later [`Store::set`] must present (`None` when
    /// the key was never written).
    fn get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes `value` under `key` if it was not written since the read that gave `cas`;
    /// `Err(())` when it was.
    #[allow(clippy::result_unit_err)]
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), ()>;
}

/// The outcome of [`Limiter::take`] when the cost was taken.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Taken {
    /// Tokens left after this request.
    pub left: f64,
    /// Less than the warning share of the allowance is left.
    pub warn: bool,
}

/// The outcome of [`Limiter::take`] when the bucket is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Whole seconds until the cost fits again (for `Retry-After`), at least 1.
    pub retry_after_s: u64,
}

/// A bucket as stored: tokens and the time of the last refill, 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

impl Bucket {
    fn decode(b: &[u8]) -> Option<Bucket> {
        let tokens = f64::from_le_bytes(b.get(0..8)?.try_into().ok()?);
        let at_ms = u64::from_le_bytes(b.get(8..16)?.try_into().ok()?);
        tokens.is_finite().then_some(Bucket { tokens, at_ms })
    }

    fn encode(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.tokens.to_le_bytes());
        out[8..].copy_from_slice(&self.at_ms.to_le_bytes());
        out
    }

    /// Refilled up to `now_ms` (a clock that goes back refills nothing).
    fn refilled(self, rate: Rate, now_ms: u64) -> Bucket {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64;
        let tokens = (self.tokens + elapsed * rate.per_minute / 60_000.0).min(rate.per_minute);
        Bucket { tokens, at_ms: now_ms.max(self.at_ms) }
    }
}

/// How many times a take is retried on CAS mismatches before it fails closed.
const MAX_ATTEMPTS: usize = 16;

/// Takes tokens from shared buckets.
#[derive(Debug, Clone, Copy)]
pub struct Limiter {
    /// The share of the allowance below which a request is marked (0.2: warn when less than a
    /// fifth is left).
    pub warn_below: f64,
}

impl Limiter {
    /// Takes `cost` tokens from the bucket `key` refilling at `rate`, at time `now_ms`.
    ///
    /// A bucket that cannot be written after [`MAX_ATTEMPTS`] CAS retries refuses the request
    /// (fail closed), and so does one whose stored bytes cannot be read. A bucket's first write
    /// carries no CAS token (proxy-wasm has none for a key never written), so workers that
    /// create the same bucket at the same instant may each take from a full one: at most one
    /// extra request per worker, once per bucket.
    ///
    /// # Examples
    ///
    /// ```
    /// use inferguard::limits::{Limiter, MemoryStore, Rate};
    ///
    /// let mut store = MemoryStore::default();
    /// let l = Limiter { warn_below: 0.2 };
    /// let rate = Rate { per_minute: 2.0 };
    /// assert!(l.take(&mut store, "alice", rate, 1.0, 0).is_ok());
    /// assert!(l.take(&mut store, "alice", rate, 1.0, 0).is_ok());
    /// // Empty: one token comes back in 30 s.
    /// assert_eq!(l.take(&mut store, "alice", rate, 1.0, 0).unwrap_err().retry_after_s, 30);
    /// assert!(l.take(&mut store, "alice", rate, 1.0, 30_000).is_ok());
    /// ```
    pub fn take(&self, store: &mut dyn Store, key: &str, rate: Rate, cost: f64, now_ms: u64) -> Result<Taken, Limited> {
        for _ in 0..MAX_ATTEMPTS {
            let (value, cas) = store.get(key);
            let bucket = match value {
                None => Bucket { tokens: rate.per_minute, at_ms: now_ms },
                Some(b) => match Bucket::decode(&b) {
                    Some(b) => b.refilled(rate, now_ms),
                    None => return Err(Limited { retry_after_s: 60 }),
                },
            };
            if bucket.tokens < cost {
                let missing = cost - bucket.tokens;
                let secs = (missing * 60.0 / rate.per_minute.max(f64::MIN_POSITIVE)).ceil();
                return Err(Limited { retry_after_s: (secs as u64).max(1) });
            }
            let next = Bucket { tokens: bucket.tokens - cost, at_ms: bucket.at_ms };
            if store.set(key, &next.encode(), cas).is_ok() {
                return Ok(Taken { left: next.tokens, warn: next.tokens < rate.per_minute * self.warn_below });
            }
        }
        Err(Limited { retry_after_s: 1 })
    }

    /// Takes what a request cost after the fact (an answer's output), without refusing: the
    /// bucket may go negative, and the next request waits for it to refill.
    pub fn charge(&self, store: &mut dyn Store, key: &str, rate: Rate, cost: f64, now_ms: u64) -> Taken {
        for _ in 0..MAX_ATTEMPTS {
            let (value, cas) = store.get(key);
            let bucket = value
                .and_then(|b| Bucket::decode(&b))
                .map_or(Bucket { tokens: rate.per_minute, at_ms: now_ms }, |b| b.refilled(rate, now_ms));
            let next = Bucket { tokens: bucket.tokens - cost, at_ms: bucket.at_ms };
            if store.set(key, &next.encode(), cas).is_ok() {
                return Taken { left: next.tokens, warn: next.tokens < rate.per_minute * self.warn_below };
            }
        }
        Taken { left: 0.0, warn: true }
    }
}

/// A [`Store`] in memory, with CAS tokens like proxy-wasm's shared data: for tests and the
/// native CLI.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: std::collections::HashMap<String, (Vec<u8>, u32)>,
}

impl Store for MemoryStore {
    fn get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.entries.get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), ()> {
        let current = self.entries.get(key).map(|(_, c)| *c);
        if cas.is_some() && cas != current {
            return Err(());
        }
        // proxy-wasm: a write without a token always succeeds; a first write has none.
        let next = current.map_or(1, |c| c.wrapping_add(1));
        self.entries.insert(key.to_owned(), (value.to_vec(), next));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limiter = Limiter { warn_below: 0.25 };

    #[test]
    fn a_bucket_spends_a_minute_at_once_then_refills_and_warns_before_refusing() {
        let mut s = MemoryStore::default();
        let rate = Rate { per_minute: 8.0 };
        let warns: Vec<bool> = (0..8).map(|_| L.take(&mut s, "k", rate, 1.0, 1_000).unwrap().warn).collect();
        // Below a quarter of 8 (2 tokens) left: the last two are marked.
        assert_eq!(warns, [false, false, false, false, false, false, true, true]);
        assert_eq!(L.take(&mut s, "k", rate, 1.0, 1_000), Err(Limited { retry_after_s: 8 }));
        // 7.5 s later one token is back.
        assert!(L.take(&mut s, "k", rate, 1.0, 8_500).is_ok());
        // Another key is another bucket.
        assert!(L.take(&mut s, "other", rate, 1.0, 8_500).is_ok());
        // A clock that goes back refills nothing and breaks nothing.
        assert!(L.take(&mut s, "k", rate, 1.0, 0).is_err());
    }

    #[test]
    fn output_is_charged_after_the_fact_and_the_debt_delays_the_next_request() {
        let mut s = MemoryStore::default();
        let rate = Rate { per_minute: 100.0 };
        let t = L.charge(&mut s, "k", rate, 130.0, 0);
        assert_eq!((t.left, t.warn), (-30.0, true));
        // 31 tokens are needed for one: 18.6 s, rounded up.
        assert_eq!(L.take(&mut s, "k", rate, 1.0, 0), Err(Limited { retry_after_s: 19 }));
        assert!(L.take(&mut s, "k", rate, 1.0, 18_600).is_ok());
    }

    /// Two "workers" that interleave read and write: without CAS both would take the last
    /// token; with it exactly `per_minute` takes succeed, however they interleave.
    #[test]
    fn interleaved_workers_never_take_more_than_the_bucket_holds() {
        struct Racing {
            inner: MemoryStore,
            /// Before every set, the other worker takes one token (the first few times).
            interfere: usize,
            stolen: usize,
        }
        impl Store for Racing {
            fn get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
                self.inner.get(key)
            }
            fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), ()> {
                if self.interfere > 0 {
                    self.interfere -= 1;
                    if L.take(&mut self.inner, key, Rate { per_minute: 10.0 }, 1.0, 0).is_ok() {
                        self.stolen += 1;
                    }
                }
                self.inner.set(key, value, cas)
            }
        }
        let mut s = Racing { inner: MemoryStore::default(), interfere: 0, stolen: 0 };
        let rate = Rate { per_minute: 10.0 };
        // The bucket exists (see `Limiter::take` on its first write), then the race begins.
        assert!(L.take(&mut s, "k", rate, 1.0, 0).is_ok());
        s.interfere = 5;
        let mut ours = 1;
        while L.take(&mut s, "k", rate, 1.0, 0).is_ok() {
            ours += 1;
        }
        assert_eq!(ours + s.stolen, 10, "ours {ours}, the other worker's {}", s.stolen);
        assert!(s.stolen > 0);
    }

    #[test]
    fn unreadable_state_refuses() {
        let mut s = MemoryStore::default();
        s.set("k", b"short", None).unwrap();
        assert_eq!(L.take(&mut s, "k", Rate { per_minute: 5.0 }, 1.0, 0), Err(Limited { retry_after_s: 60 }));
    }
}
