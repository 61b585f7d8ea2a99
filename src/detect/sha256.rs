//! HMAC-SHA256 (RFC 2104) for the `hash` action, from RustCrypto's audited `hmac` and `sha2`
//! crates (no hand-written cryptography in the filter).
//!
//! The `hash` action needs a keyed, one-way, stable token for a value. The key is absorbed once
//! ([`HmacKey::new`]); each MAC clones that state, so it costs the message plus two compressions.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// SHA-256 of `data` (the FIPS 180 vectors check the crate as built here).
#[cfg(test)]
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    <Sha256 as sha2::Digest>::digest(data).into()
}

/// A precomputed HMAC-SHA256 key: the inner and outer states after absorbing the padded key.
#[derive(Clone)]
pub(crate) struct HmacKey(Hmac<Sha256>);

impl HmacKey {
    pub(crate) fn new(key: &[u8]) -> HmacKey {
        // HMAC takes a key of any length (a long one is hashed first): this never fails.
        HmacKey(<Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length"))
    }

    /// HMAC-SHA256 of the concatenation of `parts`.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = self.0.clone();
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material, even derived.
        f.write_str("HmacKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn fips_180_vectors() {
        assert_eq!(hex(&sha256(b"")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(hex(&sha256(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(
            hex(&sha256(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        let million = vec![b'a'; 1_000_000];
        assert_eq!(hex(&sha256(&million)), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    }

    #[test]
    fn incremental_updates_match_one_shot_at_every_split() {
        let data: Vec<u8> = (0..200u8).collect();
        let want = sha256(&data);
        for split in 0..data.len() {
            let mut h = Sha256::new();
            h.update(&data[..split]);
            h.update(&data[split..]);
            assert_eq!(<[u8; 32]>::from(h.finalize()), want, "split {split}");
        }
    }

    #[test]
    fn a_mac_over_parts_is_the_mac_over_their_concatenation_at_every_split() {
        let k = HmacKey::new(b"key");
        let data: Vec<u8> = (0..150u8).collect();
        let want = k.mac(&[&data]);
        for split in 0..data.len() {
            assert_eq!(k.mac(&[&data[..split], &data[split..]]), want, "split {split}");
        }
    }

    #[test]
    fn rfc_4231_hmac_vectors() {
        // Test case 1.
        let k = HmacKey::new(&[0x0b; 20]);
        assert_eq!(hex(&k.mac(&[b"Hi There"])), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        // Test case 2, message given in two parts.
        let k = HmacKey::new(b"Jefe");
        assert_eq!(
            hex(&k.mac(&[b"what do ya want ", b"for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block size.
        let k = HmacKey::new(&[0xaa; 131]);
        assert_eq!(
            hex(&k.mac(&[b"Test Using Larger Than Block-Size Key - Hash Key First"])),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}
