//! Which plugin files an operator trusts: the `[trust]` section of `fluid.toml`.
//!
//! ```toml
//! [trust]
//! policy = "signed"            # "any" (the default), "pinned" or "signed"
//! keys = ["9f2c…"]             # signed: ed25519 public keys (hex) whose signatures count
//! [trust.pinned]               # pinned: the SHA-256 each plugin's file must have
//! exporter = "4b1d…"
//! ```
//!
//! `signed` wants `NAME.wasm.sig` beside `NAME.wasm`: the hex ed25519 signature, by one of
//! the keys, of the name and the file's SHA-256 (a signed file renamed is not signed) (`fluid keygen`, `fluid plugins sign`). A file that
//! fails the policy is refused with the reason before it is compiled; on hot reload the
//! running version stays. The bundled `db.wasm` and `stats.wasm`, byte for byte as this
//! binary carries them, are trusted as the binary is.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Which files may run at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrustPolicy {
    /// Every file in the plugins folder runs.
    #[default]
    Any,
    /// Only files whose SHA-256 is pinned for their plugin name.
    Pinned,
    /// Only files signed by a trusted key.
    Signed,
}

/// The `[trust]` section of fluid.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trust {
    /// Which files may run.
    #[serde(default)]
    pub policy: TrustPolicy,
    /// Plugin (or task component) name -> SHA-256 of its file, hex.
    #[serde(default)]
    pub pinned: BTreeMap<String, String>,
    /// Trusted ed25519 public keys, hex.
    #[serde(default)]
    pub keys: Vec<String>,
}

impl Trust {
    /// Checks the configuration itself: keys and pins that cannot be right.
    pub fn validate(&self) -> anyhow::Result<()> {
        for k in &self.keys {
            public_key(k)?;
        }
        for (name, sha) in &self.pinned {
            anyhow::ensure!(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()), "[trust.pinned] {name}: not a SHA-256 in hex");
        }
        anyhow::ensure!(
            self.policy != TrustPolicy::Signed || !self.keys.is_empty(),
            "[trust] policy = \"signed\" needs at least one key in `keys`"
        );
        Ok(())
    }

    /// Whether the file at `path` (its bytes `bytes`, plugin name `name`) may run; the
    /// reason when not.
    pub fn admits(&self, name: &str, path: &Path, bytes: &[u8]) -> Result<(), String> {
        if self.policy == TrustPolicy::Any || crate::plugins::bundled::is_bundled(name, bytes) {
            return Ok(());
        }
        let file = path.display();
        match self.policy {
            TrustPolicy::Any => Ok(()),
            TrustPolicy::Pinned => {
                let sha = crate::plugins::engine::cache::sha256(bytes);
                match self.pinned.get(name) {
                    Some(p) if p.eq_ignore_ascii_case(&sha) => Ok(()),
                    Some(_) => Err(format!(
                        "{file}: refused by the trust policy: its SHA-256 {sha} is not the one pinned for {name} in [trust.pinned]"
                    )),
                    None => Err(format!(
                        "{file}: refused by the trust policy: no SHA-256 is pinned for {name} in [trust.pinned] (this file's is {sha})"
                    )),
                }
            }
            TrustPolicy::Signed => {
                let sig_path = signature_path(path);
                let text = std::fs::read_to_string(&sig_path).map_err(|_| {
                    format!("{file}: refused by the trust policy: no signature at {} (`fluid plugins sign`)", sig_path.display())
                })?;
                let sig = from_hex(text.trim())
                    .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
                    .map(|b| Signature::from_bytes(&b))
                    .ok_or_else(|| {
                        format!("{file}: refused by the trust policy: {} is not an ed25519 signature in hex", sig_path.display())
                    })?;
                let signed = signed_message(name, bytes);
                let ok = self.keys.iter().filter_map(|k| public_key(k).ok()).any(|k| k.verify(&signed, &sig).is_ok());
                if ok {
                    Ok(())
                } else {
                    Err(format!("{file}: refused by the trust policy: its signature is not by any key in [trust] keys"))
                }
            }
        }
    }
}

/// Where the signature of the file at `path` goes: `NAME.wasm.sig`.
pub fn signature_path(path: &Path) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".sig");
    p.into()
}

/// A new signing key: the secret (hex, to keep) and the public key (hex, for `[trust] keys`).
pub fn keygen() -> (String, String) {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let key = SigningKey::from_bytes(&seed);
    (hex(&seed), hex(key.verifying_key().as_bytes()))
}

/// What a signature covers: the component's name (its file's stem, which decides its
/// grants) and its bytes' SHA-256, so a signed file renamed is not signed.
fn signed_message(name: &str, bytes: &[u8]) -> Vec<u8> {
    format!("fluid-component-v1\0{name}\0{}", crate::plugins::engine::cache::sha256(bytes)).into_bytes()
}

/// The hex signature, by the secret key `secret_hex`, of the component `name` made of `bytes`.
pub fn sign(secret_hex: &str, name: &str, bytes: &[u8]) -> anyhow::Result<String> {
    let seed: [u8; 32] = from_hex(secret_hex.trim())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("not a signing key (64 hex digits, from `fluid keygen`)"))?;
    Ok(hex(&SigningKey::from_bytes(&seed).sign(&signed_message(name, bytes)).to_bytes()))
}

fn public_key(hex_key: &str) -> anyhow::Result<VerifyingKey> {
    let b: [u8; 32] =
        from_hex(hex_key).and_then(|b| b.try_into().ok()).ok_or_else(|| anyhow::anyhow!("[trust] key {hex_key:?}: not 64 hex digits"))?;
    VerifyingKey::from_bytes(&b).map_err(|e| anyhow::anyhow!("[trust] key {hex_key:?}: {e}"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_by_a_trusted_key_admits_the_file_and_nothing_else_does() {
        let dir = std::env::temp_dir().join(format!("fluid-trust-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("p.wasm");
        std::fs::write(&file, b"bytes").unwrap();
        let (secret, public) = keygen();
        let (other_secret, _) = keygen();
        let trust = Trust { policy: TrustPolicy::Signed, keys: vec![public], ..Default::default() };
        trust.validate().unwrap();
        assert!(trust.admits("p", &file, b"bytes").unwrap_err().contains("no signature"));
        std::fs::write(signature_path(&file), sign(&other_secret, "p", b"bytes").unwrap()).unwrap();
        assert!(trust.admits("p", &file, b"bytes").unwrap_err().contains("not by any key"));
        std::fs::write(signature_path(&file), sign(&secret, "p", b"bytes").unwrap()).unwrap();
        assert_eq!(trust.admits("p", &file, b"bytes"), Ok(()));
        assert!(trust.admits("renamed", &file, b"bytes").is_err(), "a signature is for one name");
        assert!(trust.admits("p", &file, b"other bytes").is_err(), "a changed file needs a new signature");
        let pinned = Trust {
            policy: TrustPolicy::Pinned,
            pinned: [("p".into(), crate::plugins::engine::cache::sha256(b"bytes"))].into(),
            ..Default::default()
        };
        assert_eq!(pinned.admits("p", &file, b"bytes"), Ok(()));
        assert!(pinned.admits("p", &file, b"other").unwrap_err().contains("not the one pinned"));
        assert!(pinned.admits("q", &file, b"bytes").unwrap_err().contains("no SHA-256 is pinned for q"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
