//! Secrets kept in actor files (a store's webhook secret) are sealed with ChaCha20-Poly1305
//! before they are written, so a copy of a store's file (a backup, the object-storage copy, a
//! file left on a disk) does not hand out the secret that signs its catalog webhooks.
//!
//! The key: `secrets.key` (32 bytes, base64) when set; else, on a cluster node, derived from
//! the cluster secret (every node needs the same key, since a store's file moves between
//! nodes); else generated once into `{data_dir}/node/secret-key` (mode 0600). A value is stored
//! as `enc1:` + base64(nonce ‖ ciphertext ‖ tag). A value without that prefix is a plaintext
//! secret from before encryption: it is read as is and re-sealed by its store on open.
//! Other keys this node knows (its key file when the primary key comes from elsewhere) are
//! tried when the primary one does not open a value, so a node that joins a cluster or gets a
//! configured key still reads what it sealed before.

use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::Mac as _;
use rand::RngCore;

const PREFIX: &str = "enc1:";
const NONCE_LEN: usize = 12;

/// What opening a stored value gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// Sealed with the primary key.
    Current(String),
    /// Plaintext from before encryption, or sealed with an older key: re-seal it.
    Stale(String),
}

impl Opened {
    pub fn value(&self) -> &str {
        match self {
            Opened::Current(v) | Opened::Stale(v) => v,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the sealed value is malformed")]
    Malformed,
    #[error("no key of this node opens the sealed value (was it sealed with another secrets.key?)")]
    WrongKey,
    #[error("sealing failed")]
    Seal,
}

/// The node's keys: the first seals, all open.
pub struct SecretBox {
    keys: Vec<ChaCha20Poly1305>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBox({} keys)", self.keys.len())
    }
}

impl SecretBox {
    pub fn from_keys(keys: &[[u8; 32]]) -> SecretBox {
        SecretBox { keys: keys.iter().map(|k| ChaCha20Poly1305::new(Key::from_slice(k))).collect() }
    }

    /// The node's keys from its settings (see the module comment). Creates the key file when
    /// it is the primary key and does not exist yet.
    pub fn for_node(configured: Option<&str>, cluster_secret: Option<&[u8]>, key_file: &Path) -> anyhow::Result<SecretBox> {
        let mut keys = Vec::new();
        if let Some(raw) = configured.map(str::trim).filter(|k| !k.is_empty()) {
            let bytes = base64::engine::general_purpose::STANDARD.decode(raw).context("secrets.key is not base64")?;
            let key: [u8; 32] = bytes.try_into().map_err(|_| anyhow::anyhow!("secrets.key must be 32 bytes (base64)"))?;
            keys.push(key);
        }
        if let Some(secret) = cluster_secret.filter(|s| !s.is_empty()) {
            let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(secret).context("cluster secret")?;
            mac.update(b"vitrina/secrets-key/v1");
            keys.push(mac.finalize().into_bytes().into());
        }
        match read_key_file(key_file)? {
            Some(key) => keys.push(key),
            None if keys.is_empty() => {
                let mut key = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut key);
                crate::private_files::write_text(key_file, &base64::engine::general_purpose::STANDARD.encode(key))?;
                keys.push(key);
            }
            None => {}
        }
        Ok(SecretBox::from_keys(&keys))
    }

    /// Seals `plaintext` with the primary key and a random nonce.
    pub fn seal(&self, plaintext: &str) -> Result<String, SecretError> {
        let key = self.keys.first().ok_or(SecretError::Seal)?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = key.encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes()).map_err(|_| SecretError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(out)))
    }

    /// Opens a stored value: a sealed one with any key of this node, a plaintext one as is.
    pub fn open(&self, stored: &str) -> Result<Opened, SecretError> {
        let Some(encoded) = stored.strip_prefix(PREFIX) else { return Ok(Opened::Stale(stored.to_string())) };
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| SecretError::Malformed)?;
        if bytes.len() < NONCE_LEN + 16 {
            return Err(SecretError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        for (i, key) in self.keys.iter().enumerate() {
            if let Ok(plain) = key.decrypt(Nonce::from_slice(nonce), sealed) {
                let value = String::from_utf8(plain).map_err(|_| SecretError::Malformed)?;
                return Ok(if i == 0 { Opened::Current(value) } else { Opened::Stale(value) });
            }
        }
        Err(SecretError::WrongKey)
    }
}

fn read_key_file(path: &Path) -> anyhow::Result<Option<[u8; 32]>> {
    let raw = match std::fs::read_to_string(path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(raw.trim()).with_context(|| format!("{} is not base64", path.display()))?;
    let key: [u8; 32] = bytes.try_into().map_err(|_| anyhow::anyhow!("{} must hold 32 bytes (base64)", path.display()))?;
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_a_known_key() {
        let a = SecretBox::from_keys(&[[1; 32]]);
        let sealed = a.seal("whsec_0123456789abcdef").unwrap();
        assert!(sealed.starts_with(PREFIX) && !sealed.contains("whsec"));
        assert_eq!(a.open(&sealed).unwrap(), Opened::Current("whsec_0123456789abcdef".into()));
        assert_ne!(a.seal("x").unwrap(), a.seal("x").unwrap(), "nonces are random");
        let rotated = SecretBox::from_keys(&[[2; 32], [1; 32]]);
        assert_eq!(rotated.open(&sealed).unwrap(), Opened::Stale("whsec_0123456789abcdef".into()));
        assert!(matches!(SecretBox::from_keys(&[[3; 32]]).open(&sealed), Err(SecretError::WrongKey)));
        assert_eq!(a.open("plain-legacy-secret").unwrap(), Opened::Stale("plain-legacy-secret".into()));
        let mut tampered: Vec<char> = sealed.chars().collect();
        let i = PREFIX.len() + 20;
        tampered[i] = if tampered[i] == 'A' { 'B' } else { 'A' };
        assert!(a.open(&tampered.into_iter().collect::<String>()).is_err());
    }
}
