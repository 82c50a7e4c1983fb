//! Web Push to the owner's devices: RFC 8291 message encryption (`aes128gcm`), RFC 8292 VAPID
//! (ES256 JWT), RFC 8030 delivery with `TTL`, `Urgency` and `Topic`. Every primitive is ring's:
//! P-256 ECDH, HMAC/HKDF-SHA-256, AES-128-GCM, ECDSA P-256.
//!
//! The payload a device gets is only `{type, id, title, tier, summary, url}`: the summary is the
//! tenant's already-redacted one line, and the hub never holds a secret value to leak.

use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use ring::{aead, agreement, hkdf};
use serde::Serialize;

/// Record size written in the header (one record; RFC 8291 §4).
const RECORD_SIZE: u32 = 4096;
/// Largest plaintext that fits one 4096-byte push body.
pub const MAX_PLAINTEXT: usize = 3993;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("the subscription's p256dh key is not a P-256 point (65 bytes, uncompressed)")]
    BadClientKey,
    #[error("the subscription's auth secret is not 16 bytes")]
    BadAuth,
    #[error("the push payload is {0} bytes, over {MAX_PLAINTEXT}")]
    TooLarge(usize),
    #[error("crypto failure: {0}")]
    Crypto(&'static str),
    #[error("VAPID key {path}: {message}")]
    Key { path: PathBuf, message: String },
}

fn b64(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}

/// Decodes base64url with or without padding (browsers send either).
pub fn unb64(s: &str) -> Option<Vec<u8>> {
    base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        s.trim().trim_end_matches('='),
    )
    .ok()
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8], len: usize) -> Result<Vec<u8>, PushError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let info = [info];
    let okm = prk
        .expand(&info, Len(len))
        .map_err(|_| PushError::Crypto("hkdf expand"))?;
    let mut out = vec![0u8; len];
    okm.fill(&mut out)
        .map_err(|_| PushError::Crypto("hkdf fill"))?;
    Ok(out)
}

/// RFC 8291 §3.4 and RFC 8188 from an already agreed ECDH secret: derives the key and nonce and
/// seals one record. Split out so the Appendix A vector can be checked byte for byte (ring
/// cannot import a fixed ephemeral private key).
pub fn encrypt_with_secret(
    ecdh_secret: &[u8],
    as_public: &[u8],
    ua_public: &[u8],
    auth_secret: &[u8],
    salt: &[u8; 16],
    plaintext: &[u8],
) -> Result<Vec<u8>, PushError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(PushError::TooLarge(plaintext.len()));
    }
    let mut key_info = Vec::with_capacity(14 + 65 + 65);
    key_info.extend_from_slice(b"WebPush: info\0");
    key_info.extend_from_slice(ua_public);
    key_info.extend_from_slice(as_public);
    let ikm = hkdf(auth_secret, ecdh_secret, &key_info, 32)?;
    let cek = hkdf(salt, &ikm, b"Content-Encoding: aes128gcm\0", 16)?;
    let nonce = hkdf(salt, &ikm, b"Content-Encoding: nonce\0", 12)?;
    let key = aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::AES_128_GCM, &cek).map_err(|_| PushError::Crypto("key"))?,
    );
    let nonce =
        aead::Nonce::try_assume_unique_for_key(&nonce).map_err(|_| PushError::Crypto("nonce"))?;
    let mut record = plaintext.to_vec();
    record.push(0x02); // last-record delimiter, no padding
    key.seal_in_place_append_tag(nonce, aead::Aad::empty(), &mut record)
        .map_err(|_| PushError::Crypto("seal"))?;
    let mut body = Vec::with_capacity(86 + record.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(u8::try_from(as_public.len()).map_err(|_| PushError::Crypto("key id"))?);
    body.extend_from_slice(as_public);
    body.extend_from_slice(&record);
    Ok(body)
}

/// Encrypts `plaintext` for a subscription (`p256dh` and `auth` as the browser gave them):
/// a fresh ephemeral P-256 key and a random salt per message.
pub fn encrypt(
    ua_public: &[u8],
    auth_secret: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, PushError> {
    if ua_public.len() != 65 || ua_public.first() != Some(&4) {
        return Err(PushError::BadClientKey);
    }
    if auth_secret.len() != 16 {
        return Err(PushError::BadAuth);
    }
    let rng = SystemRandom::new();
    let mut salt = [0u8; 16];
    rng.fill(&mut salt)
        .map_err(|_| PushError::Crypto("random"))?;
    let private = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng)
        .map_err(|_| PushError::Crypto("ephemeral key"))?;
    let as_public = private
        .compute_public_key()
        .map_err(|_| PushError::Crypto("public key"))?;
    let as_public = as_public.as_ref().to_vec();
    // ring checks that the peer's point is on the curve.
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, ua_public);
    let secret = agreement::agree_ephemeral(private, &peer, |s| s.to_vec())
        .map_err(|_| PushError::BadClientKey)?;
    encrypt_with_secret(
        &secret,
        &as_public,
        ua_public,
        auth_secret,
        &salt,
        plaintext,
    )
}

/// The hub's VAPID key (ECDSA P-256), made once and kept next to the database. Rotating it would
/// break every subscription, so it is never replaced automatically.
pub struct Vapid {
    pair: EcdsaKeyPair,
    /// Contact for push services (`mailto:` or `https:`).
    pub subject: String,
}

impl std::fmt::Debug for Vapid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vapid")
            .field("public", &self.public_key_b64())
            .finish_non_exhaustive()
    }
}

impl Vapid {
    /// Reads the key at `path`, creating it (0600) when missing.
    pub fn load_or_create(path: &Path, subject: &str) -> Result<Vapid, PushError> {
        let rng = SystemRandom::new();
        let (pkcs8, _) = crate::keys::read_or_create(path, || {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .ok()
                .map(|doc| doc.as_ref().to_vec())
        })
        .map_err(|e| PushError::Key {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|_| PushError::Key {
                path: path.to_owned(),
                message: "not an ECDSA P-256 PKCS#8 key".into(),
            })?;
        Ok(Vapid {
            pair,
            subject: subject.to_owned(),
        })
    }

    /// The public key as browsers want it for `applicationServerKey` (uncompressed, base64url).
    pub fn public_key_b64(&self) -> String {
        b64(self.pair.public_key().as_ref())
    }

    /// `Authorization: vapid t=JWT, k=KEY` for a push to `endpoint` (RFC 8292 §2-3): `aud` is
    /// the endpoint's origin, `exp` 12 h ahead (the limit is 24 h).
    pub fn authorization(&self, endpoint: &reqwest::Url, now: i64) -> Result<String, PushError> {
        let aud = endpoint.origin().ascii_serialization();
        let header = b64(br#"{"typ":"JWT","alg":"ES256"}"#);
        #[derive(Serialize)]
        struct Claims<'a> {
            aud: &'a str,
            exp: i64,
            sub: &'a str,
        }
        let claims = serde_json::to_vec(&Claims {
            aud: &aud,
            exp: now + 12 * 3600,
            sub: &self.subject,
        })
        .map_err(|_| PushError::Crypto("claims"))?;
        let signing_input = format!("{header}.{}", b64(&claims));
        let sig = self
            .pair
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|_| PushError::Crypto("sign"))?;
        Ok(format!(
            "vapid t={signing_input}.{}, k={}",
            b64(sig.as_ref()),
            self.public_key_b64()
        ))
    }
}

/// What a device is told.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Payload {
    /// `approval` (new or reminder) or `withdrawn` (decided or expired: close it).
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub title: String,
    pub tier: shared::wire::Tier,
    pub summary: String,
    pub url: String,
}

impl Payload {
    /// The JSON bytes, with the summary shortened to fit one push record.
    pub fn to_bytes(&self) -> Result<Vec<u8>, PushError> {
        let mut p = self.clone();
        p.summary = p.summary.chars().take(300).collect();
        serde_json::to_vec(&p).map_err(|_| PushError::Crypto("payload"))
    }
}

/// The RFC 8030 `Topic` for an approval (≤ 32 base64url characters), so that a reminder or a
/// withdrawal replaces an undelivered earlier push for the same approval.
pub fn topic(id: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
    b64(d.as_ref()).chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn d(s: &str) -> Vec<u8> {
        unb64(s).unwrap()
    }

    /// RFC 8291 Appendix A, every value copied from the RFC.
    #[test]
    fn rfc8291_appendix_a_byte_for_byte() {
        let plaintext = d("V2hlbiBJIGdyb3cgdXAsIEkgd2FudCB0byBiZSBhIHdhdGVybWVsb24");
        assert_eq!(plaintext, b"When I grow up, I want to be a watermelon");
        let as_public = d(
            "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8",
        );
        let ua_public = d(
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
        );
        let salt: [u8; 16] = d("DGv6ra1nlYgDCS1FRnbzlw").try_into().unwrap();
        let auth = d("BTBZMqHH6r4Tts7J_aSIgg");
        let ecdh = d("kyrL1jIIOHEzg3sM2ZWRHDRB62YACZhhSlknJ672kSs");
        // The intermediate values, through the same helper the encryption uses.
        let key_info = d(
            "V2ViUHVzaDogaW5mbwAEJXGyvs3942BVGq8e0PTNNmwRzr5VX4m8t7GGpTM5FzFo7OLr4BhZe9MEebhuPI-OztV3ylkYfpJGmQ22ggCLDgT-M_SrDepxkU21WCP3O1SUj0EwbZIHMtu5pZpTKGSCIA5Zent7wmC6HCJ5mFgJkuk5cwAvMBKiiujwa7t45ewP",
        );
        let ikm = hkdf(&auth, &ecdh, &key_info, 32).unwrap();
        assert_eq!(ikm, d("S4lYMb_L0FxCeq0WhDx813KgSYqU26kOyzWUdsXYyrg"));
        assert_eq!(
            hkdf(
                &salt,
                &ikm,
                &d("Q29udGVudC1FbmNvZGluZzogYWVzMTI4Z2NtAA"),
                16
            )
            .unwrap(),
            d("oIhVW04MRdy2XN9CiKLxTg")
        );
        assert_eq!(
            hkdf(&salt, &ikm, &d("Q29udGVudC1FbmNvZGluZzogbm9uY2UA"), 12).unwrap(),
            d("4h_95klXJ5E_qnoN")
        );
        let body =
            encrypt_with_secret(&ecdh, &as_public, &ua_public, &auth, &salt, &plaintext).unwrap();
        assert_eq!(
            b64(&body),
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
        );
        assert_eq!(body.len(), 144);
    }

    #[test]
    fn refuses_bad_subscriptions_and_oversized_payloads() {
        let ua = d(
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
        );
        let auth = d("BTBZMqHH6r4Tts7J_aSIgg");
        assert!(encrypt(&ua, &auth, b"hi").unwrap().len() == 86 + 3 + 16);
        let mut off_curve = ua.clone();
        off_curve[64] ^= 1;
        assert!(matches!(
            encrypt(&off_curve, &auth, b"hi"),
            Err(PushError::BadClientKey)
        ));
        assert!(matches!(
            encrypt(&ua[..33], &auth, b"hi"),
            Err(PushError::BadClientKey)
        ));
        assert!(matches!(
            encrypt(&ua, &auth[..8], b"hi"),
            Err(PushError::BadAuth)
        ));
        assert!(matches!(
            encrypt(&ua, &auth, &[b'x'; 3994]),
            Err(PushError::TooLarge(3994))
        ));
        assert_eq!(topic("req-0000000001").len(), 32);
    }

    #[test]
    fn vapid_jwt_verifies_and_names_the_push_origin() {
        let dir = tempfile::tempdir().unwrap();
        let v =
            Vapid::load_or_create(&dir.path().join("vapid.key"), "mailto:ops@hub.example").unwrap();
        let again =
            Vapid::load_or_create(&dir.path().join("vapid.key"), "mailto:ops@hub.example").unwrap();
        assert_eq!(v.public_key_b64(), again.public_key_b64());
        let url = reqwest::Url::parse("https://push.example.net:8443/wpush/abc?x=1").unwrap();
        let auth = v.authorization(&url, 1_000).unwrap();
        let (t, k) = auth
            .strip_prefix("vapid t=")
            .unwrap()
            .split_once(", k=")
            .unwrap();
        assert_eq!(k, v.public_key_b64());
        let (input, sig) = t.rsplit_once('.').unwrap();
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, d(k))
            .verify(input.as_bytes(), &d(sig))
            .unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&d(input.split('.').nth(1).unwrap())).unwrap();
        assert_eq!(claims["aud"], "https://push.example.net:8443");
        assert_eq!(claims["exp"], 1_000 + 12 * 3600);
        assert_eq!(claims["sub"], "mailto:ops@hub.example");
    }
}
