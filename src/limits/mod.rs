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
//!
//! proxy-wasm shared data cannot delete a key (the ABI has get and set only; Envoy keeps a key
//! whose value is set to nothing), so the state is bounded by construction instead: a caller is
//! hashed into one of the policy's `max_callers` slots ([`BucketKey`]), and each slot's key is
//! written once and reused forever. Each policy and allowance also keeps a bitmap of the slots
//! whose key exists (its registry), which makes [`Taken::new_key`] true exactly once per key,
//! however many workers create it at the same instant: the count of keys the process holds.
//!
//! [`output_cost`] decides what an answer costs against the output allowance.

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
    /// This call created the bucket's key: the process holds one key more (counted once per key
    /// across all workers, through the registry).
    pub new_key: bool,
}

/// Which allowance of a policy a bucket holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// `requests_per_minute`.
    Requests,
    /// `output_per_minute`.
    Output,
}

impl Allowance {
    fn tag(self) -> &'static str {
        match self {
            Allowance::Requests => "r",
            Allowance::Output => "o",
        }
    }
}

/// The slots a policy has when its configuration gives no `max_callers`.
pub const DEFAULT_MAX_CALLERS: u32 = 65_536;

/// The most slots a policy may have: 2 × 262,144 keys of about 120 bytes each in Envoy, and a
/// registry of 32 KiB copied when a key is created.
pub const MAX_MAX_CALLERS: u32 = 262_144;

/// The slot of `caller` among `slots` under `policy` (FNV-1a: stable across workers, restarts and
/// builds, which the e2e test relies on to know which callers share a slot).
pub fn slot_of(policy: &str, caller: &str, slots: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in policy.bytes().chain([0]).chain(caller.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(slots.max(1))) as u32
}

/// A caller's bucket of one allowance under one policy: the shared-data key of its slot and the
/// registry of the policy's slots. Two callers in one slot share one bucket: stricter, never
/// looser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketKey {
    key: String,
    registry: String,
    slot: u32,
    slots: u32,
}

impl BucketKey {
    /// The bucket of `caller` (the verified subject, else the client's address) for `allowance`
    /// under `policy`, which has `slots` slots.
    pub fn new(policy: &str, allowance: Allowance, caller: &str, slots: u32) -> BucketKey {
        let slots = slots.max(1);
        let slot = slot_of(policy, caller, slots);
        let tag = allowance.tag();
        // The policy name last: it may hold any character, and nothing follows it to confuse.
        BucketKey {
            key: format!("inferguard.rl.{tag}.{slot}.{policy}"),
            registry: registry_key(policy, allowance),
            slot,
            slots,
        }
    }

    /// The shared-data key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The slot, from 0 to the policy's `max_callers` - 1.
    pub fn slot(&self) -> u32 {
        self.slot
    }
}

fn registry_key(policy: &str, allowance: Allowance) -> String {
    format!("inferguard.rl.{}.slots.{policy}", allowance.tag())
}

/// Writes an empty registry for `policy` and `allowance` unless one exists. The glue calls it
/// when a configuration is loaded, before any request, so that no two workers create one at the
/// same time (a registry created then would lose a slot marked in between, and the key of that
/// slot could be counted twice).
pub fn create_registry(store: &mut dyn Store, policy: &str, allowance: Allowance, slots: u32) {
    let key = registry_key(policy, allowance);
    if store.get(&key).0.is_none() {
        let _ = store.set(&key, &vec![0u8; slots.max(1).div_ceil(8) as usize], None);
    }
}

/// Marks the bucket's slot in its registry; true when this call marked it, so each key is counted
/// once however many workers find it missing at the same instant. Only called when a bucket key
/// was found missing (rare: once per slot), so the bitmap is copied only then.
fn claim(store: &mut dyn Store, b: &BucketKey) -> bool {
    let (byte, bit) = ((b.slot / 8) as usize, 1u8 << (b.slot % 8));
    for _ in 0..MAX_ATTEMPTS {
        let (value, cas) = store.get(&b.registry);
        let Some(mut map) = value else {
            // Not written at configuration (a store in a test): written empty now, then marked.
            let _ = store.set(&b.registry, &vec![0u8; b.slots.div_ceil(8) as usize], None);
            continue;
        };
        if map.get(byte).is_some_and(|m| m & bit != 0) {
            return false;
        }
        if map.len() <= byte {
            // The policy has more slots than when its registry was written.
            map.resize(byte + 1, 0);
        }
        map[byte] |= bit;
        if store.set(&b.registry, &map, cas).is_ok() {
            return true;
        }
    }
    // Contended past every retry: not counted (the count errs low, never the keys high).
    false
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
    /// Takes `cost` tokens from `bucket` refilling at `rate`, at time `now_ms`.
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
    /// use inferguard::limits::{Allowance, BucketKey, Limiter, MemoryStore, Rate};
    ///
    /// let mut store = MemoryStore::default();
    /// let l = Limiter { warn_below: 0.2 };
    /// let rate = Rate { per_minute: 2.0 };
    /// let alice = BucketKey::new("default", Allowance::Requests, "alice", 65_536);
    /// assert!(l.take(&mut store, &alice, rate, 1.0, 0).unwrap().new_key);
    /// assert!(!l.take(&mut store, &alice, rate, 1.0, 0).unwrap().new_key);
    /// // Empty: one token comes back in 30 s.
    /// assert_eq!(l.take(&mut store, &alice, rate, 1.0, 0).unwrap_err().retry_after_s, 30);
    /// assert!(l.take(&mut store, &alice, rate, 1.0, 30_000).is_ok());
    /// ```
    pub fn take(
        &self,
        store: &mut dyn Store,
        bucket: &BucketKey,
        rate: Rate,
        cost: f64,
        now_ms: u64,
    ) -> Result<Taken, Limited> {
        for _ in 0..MAX_ATTEMPTS {
            let (value, cas) = store.get(&bucket.key);
            let fresh = value.is_none();
            let tokens = match value {
                None => Bucket { tokens: rate.per_minute, at_ms: now_ms },
                Some(b) => match Bucket::decode(&b) {
                    Some(b) => b.refilled(rate, now_ms),
                    None => return Err(Limited { retry_after_s: 60 }),
                },
            };
            if tokens.tokens < cost {
                let missing = cost - tokens.tokens;
                let secs = (missing * 60.0 / rate.per_minute.max(f64::MIN_POSITIVE)).ceil();
                return Err(Limited { retry_after_s: (secs as u64).max(1) });
            }
            let next = Bucket { tokens: tokens.tokens - cost, at_ms: tokens.at_ms };
            if store.set(&bucket.key, &next.encode(), cas).is_ok() {
                return Ok(self.taken(store, bucket, rate, next, fresh));
            }
        }
        Err(Limited { retry_after_s: 1 })
    }

    /// Takes what a request cost after the fact (an answer's output), without refusing: the
    /// bucket may go negative, and the next request waits for it to refill.
    pub fn charge(&self, store: &mut dyn Store, bucket: &BucketKey, rate: Rate, cost: f64, now_ms: u64) -> Taken {
        for _ in 0..MAX_ATTEMPTS {
            let (value, cas) = store.get(&bucket.key);
            let fresh = value.is_none();
            let tokens = value
                .and_then(|b| Bucket::decode(&b))
                .map_or(Bucket { tokens: rate.per_minute, at_ms: now_ms }, |b| b.refilled(rate, now_ms));
            let next = Bucket { tokens: tokens.tokens - cost, at_ms: tokens.at_ms };
            if store.set(&bucket.key, &next.encode(), cas).is_ok() {
                return self.taken(store, bucket, rate, next, fresh);
            }
        }
        Taken { left: 0.0, warn: true, new_key: false }
    }

    fn taken(&self, store: &mut dyn Store, bucket: &BucketKey, rate: Rate, next: Bucket, fresh: bool) -> Taken {
        Taken {
            left: next.tokens,
            warn: next.tokens < rate.per_minute * self.warn_below,
            new_key: fresh && claim(store, bucket),
        }
    }
}

/// Bytes of generated text one token is taken to carry at most, on average over an answer:
/// English runs at about 4 bytes a token, code and other scripts at 1 to 6, and no tokenizer
/// in use averages anywhere near 16. A reported count below text bytes / 16 is not believed.
pub const MAX_TEXT_BYTES_PER_TOKEN: u64 = 16;

/// What an answer costs against `output_per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputCost {
    /// Completion tokens: the count the answer reports, never fewer than its text bytes /
    /// [`MAX_TEXT_BYTES_PER_TOKEN`].
    Tokens(u64),
    /// The answer reports no count: its bytes as sent.
    Bytes(u64),
}

impl OutputCost {
    /// What is taken from the bucket.
    pub fn amount(self) -> u64 {
        match self {
            OutputCost::Tokens(n) | OutputCost::Bytes(n) => n,
        }
    }
}

/// The cost of an answer that reported `reported_tokens` output tokens (its `usage`), carried
/// `text_bytes` bytes of generated text and went out as `answer_bytes` bytes.
///
/// The upstream is not trusted to count: a report of fewer tokens than the text could hold is
/// raised to text bytes / [`MAX_TEXT_BYTES_PER_TOKEN`], so a zero or tiny count buys at most 16
/// bytes of text a token. A larger count than the text shows is charged as reported (hidden
/// reasoning tokens are real output).
///
/// # Examples
///
/// ```
/// use inferguard::limits::{output_cost, OutputCost};
///
/// assert_eq!(output_cost(Some(12), 48, 400), OutputCost::Tokens(12));
/// assert_eq!(output_cost(Some(1), 1600, 1800), OutputCost::Tokens(100));
/// assert_eq!(output_cost(None, 48, 400), OutputCost::Bytes(400));
/// ```
pub fn output_cost(reported_tokens: Option<u64>, text_bytes: u64, answer_bytes: u64) -> OutputCost {
    match reported_tokens {
        Some(n) => OutputCost::Tokens(n.max(text_bytes.div_ceil(MAX_TEXT_BYTES_PER_TOKEN))),
        None => OutputCost::Bytes(answer_bytes),
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

    fn key(caller: &str) -> BucketKey {
        BucketKey::new("default", Allowance::Requests, caller, DEFAULT_MAX_CALLERS)
    }

    #[test]
    fn a_bucket_spends_a_minute_at_once_then_refills_and_warns_before_refusing() {
        let mut s = MemoryStore::default();
        let rate = Rate { per_minute: 8.0 };
        let warns: Vec<bool> = (0..8).map(|_| L.take(&mut s, &key("k"), rate, 1.0, 1_000).unwrap().warn).collect();
        // Below a quarter of 8 (2 tokens) left: the last two are marked.
        assert_eq!(warns, [false, false, false, false, false, false, true, true]);
        assert_eq!(L.take(&mut s, &key("k"), rate, 1.0, 1_000), Err(Limited { retry_after_s: 8 }));
        // 7.5 s later one token is back.
        assert!(L.take(&mut s, &key("k"), rate, 1.0, 8_500).is_ok());
        // Another key is another bucket.
        assert!(L.take(&mut s, &key("other"), rate, 1.0, 8_500).is_ok());
        // A clock that goes back refills nothing and breaks nothing.
        assert!(L.take(&mut s, &key("k"), rate, 1.0, 0).is_err());
    }

    #[test]
    fn output_is_charged_after_the_fact_and_the_debt_delays_the_next_request() {
        let mut s = MemoryStore::default();
        let rate = Rate { per_minute: 100.0 };
        let t = L.charge(&mut s, &key("k"), rate, 130.0, 0);
        assert_eq!((t.left, t.warn), (-30.0, true));
        // 31 tokens are needed for one: 18.6 s, rounded up.
        assert_eq!(L.take(&mut s, &key("k"), rate, 1.0, 0), Err(Limited { retry_after_s: 19 }));
        assert!(L.take(&mut s, &key("k"), rate, 1.0, 18_600).is_ok());
    }

    /// Two "workers" that interleave read and write: without CAS both would take the last
    /// token; with it exactly `per_minute` takes succeed, however they interleave.
    #[test]
    fn interleaved_workers_never_take_more_than_the_bucket_holds() {
        struct Racing {
            inner: MemoryStore,
            /// Before every set of the bucket, the other worker takes one token from it (the
            /// first few times).
            interfere: usize,
            stolen: usize,
        }
        impl Store for Racing {
            fn get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
                self.inner.get(key)
            }
            fn set(&mut self, k: &str, value: &[u8], cas: Option<u32>) -> Result<(), ()> {
                if self.interfere > 0 && k == key("k").key() {
                    self.interfere -= 1;
                    if L.take(&mut self.inner, &key("k"), Rate { per_minute: 10.0 }, 1.0, 0).is_ok() {
                        self.stolen += 1;
                    }
                }
                self.inner.set(k, value, cas)
            }
        }
        let mut s = Racing { inner: MemoryStore::default(), interfere: 0, stolen: 0 };
        let rate = Rate { per_minute: 10.0 };
        // The bucket exists (see `Limiter::take` on its first write), then the race begins.
        assert!(L.take(&mut s, &key("k"), rate, 1.0, 0).is_ok());
        s.interfere = 5;
        let mut ours = 1;
        while L.take(&mut s, &key("k"), rate, 1.0, 0).is_ok() {
            ours += 1;
        }
        assert_eq!(ours + s.stolen, 10, "ours {ours}, the other worker's {}", s.stolen);
        assert!(s.stolen > 0);
    }

    #[test]
    fn unreadable_state_refuses() {
        let mut s = MemoryStore::default();
        s.set(key("k").key(), b"short", None).unwrap();
        assert_eq!(L.take(&mut s, &key("k"), Rate { per_minute: 5.0 }, 1.0, 0), Err(Limited { retry_after_s: 60 }));
    }

    #[test]
    fn callers_land_in_a_bounded_number_of_slots_per_policy() {
        let slots: std::collections::HashSet<u32> =
            (0..200_000).map(|i| slot_of("default", &format!("10.{i}"), 65_536)).collect();
        assert!(slots.len() <= 65_536);
        assert!(slots.len() > 60_000, "{}", slots.len());
        let small: std::collections::HashSet<u32> =
            (0..5_000).map(|i| slot_of("default", &format!("10.{i}"), 256)).collect();
        assert_eq!(small.len(), 256);
        assert!(small.iter().all(|s| *s < 256));
        // The value the e2e test computes in Python for the same caller.
        assert_eq!(slot_of("default", "alice", 256), (fnv1a(b"default\0alice") % 256) as u32);
        // Keys name the allowance, the slot and the policy; registries cannot be taken for keys.
        let k = BucketKey::new("strict.r.7", Allowance::Output, "alice", 256);
        assert_eq!(k.key(), format!("inferguard.rl.o.{}.strict.r.7", k.slot()));
        assert_ne!(BucketKey::new("p", Allowance::Requests, "a", 1).key(), registry_key("p", Allowance::Requests));
    }

    fn fnv1a(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
    }

    /// Each key is counted once: by whichever worker marks its slot in the registry first, also
    /// when two workers find it missing at the same instant and both write it.
    #[test]
    fn a_new_key_is_counted_exactly_once_even_when_two_workers_create_it() {
        let mut s = MemoryStore::default();
        create_registry(&mut s, "default", Allowance::Requests, 256);
        let rate = Rate { per_minute: 5.0 };
        let k = BucketKey::new("default", Allowance::Requests, "alice", 256);
        // Worker A reads the bucket (missing), then worker B creates it in full before A writes.
        let (value, _) = s.get(k.key());
        assert!(value.is_none());
        assert!(L.take(&mut s, &k, rate, 1.0, 0).unwrap().new_key);
        // A writes without a token (it had none: the key was missing), then claims the slot.
        s.set(k.key(), &Bucket { tokens: 4.0, at_ms: 0 }.encode(), None).unwrap();
        assert!(!claim(&mut s, &k));
        // Later takes, and other callers of the same slot, create nothing.
        assert!(!L.take(&mut s, &k, rate, 1.0, 0).unwrap().new_key);
        let mate = (0..).map(|i| format!("c{i}")).find(|c| slot_of("default", c, 256) == k.slot()).unwrap();
        let mate = BucketKey::new("default", Allowance::Requests, &mate, 256);
        assert_eq!(mate, k);
        // The output allowance of the slot is another key, counted on its own.
        let out = BucketKey::new("default", Allowance::Output, "alice", 256);
        assert!(L.charge(&mut s, &out, rate, 3.0, 0).new_key);
        assert!(!L.charge(&mut s, &out, rate, 3.0, 0).new_key);
    }

    /// A caller cycling through identities fills at most `max_callers` slots: the keys stay
    /// bounded, the count says how many there are, and callers that share a slot share its
    /// allowance (stricter, never looser).
    #[test]
    fn cycling_identities_fill_at_most_the_slots_and_share_their_allowance() {
        let mut s = MemoryStore::default();
        let rate = Rate { per_minute: 3.0 };
        let mut new_keys = 0;
        let mut served = std::collections::HashMap::<u32, u32>::new();
        for i in 0..5_000 {
            let k = BucketKey::new("p", Allowance::Requests, &format!("user-{i}"), 64);
            if let Ok(t) = L.take(&mut s, &k, rate, 1.0, 0) {
                new_keys += u32::from(t.new_key);
                *served.entry(k.slot()).or_default() += 1;
            }
        }
        assert_eq!(new_keys, 64);
        // 64 bucket keys and one registry.
        assert_eq!(s.entries.len(), 65);
        assert_eq!(served.len(), 64);
        assert!(served.values().all(|n| *n == 3), "{served:?}");
    }

    #[test]
    fn a_registry_grows_when_the_policy_gets_more_slots() {
        let mut s = MemoryStore::default();
        create_registry(&mut s, "p", Allowance::Requests, 8);
        assert_eq!(s.get("inferguard.rl.r.slots.p").0.unwrap(), [0]);
        let k = (0..)
            .map(|i| BucketKey::new("p", Allowance::Requests, &format!("u{i}"), 1_000))
            .find(|k| k.slot() >= 900)
            .unwrap();
        assert!(claim(&mut s, &k));
        assert!(!claim(&mut s, &k));
        assert_eq!(s.get("inferguard.rl.r.slots.p").0.unwrap().len(), k.slot() as usize / 8 + 1);
        // Created at configuration only if missing: a reload keeps what was marked.
        create_registry(&mut s, "p", Allowance::Requests, 8);
        assert!(!claim(&mut s, &k));
    }

    #[test]
    fn output_is_charged_in_reported_tokens_never_fewer_than_text_bytes_over_16() {
        for (reported, text, answer, want) in [
            (Some(12), 48, 400, OutputCost::Tokens(12)),
            // Tiny or zero reports are raised to one token per 16 bytes of text, rounded up.
            (Some(0), 48, 400, OutputCost::Tokens(3)),
            (Some(1), 1_000_001, 1_100_000, OutputCost::Tokens(62_501)),
            // More than the text shows (hidden reasoning) is charged as reported.
            (Some(5_000), 100, 300, OutputCost::Tokens(5_000)),
            (Some(0), 0, 120, OutputCost::Tokens(0)),
            // No report: the bytes sent.
            (None, 48, 400, OutputCost::Bytes(400)),
        ] {
            assert_eq!(output_cost(reported, text, answer), want, "{reported:?} {text} {answer}");
        }
    }
}
