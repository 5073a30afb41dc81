//! The disk cache of precompiled policy code (`policy.cache_dir`).
//!
//! A cache entry is native code that wasmtime maps and runs without checking it, so whoever
//! can write the cache can run code in the sidecar. Three rules keep the cache as trusted as
//! the binary:
//!
//! - **The folder.** It must be a directory owned by the user clonekeeper runs as and not
//!   writable by group or others (it is created with mode 0700). Otherwise the cache is
//!   refused with an error naming the path, and policies are compiled at every load instead;
//!   the sidecar runs on (the cache only saves time).
//! - **Each entry** is a regular file (not a symlink) owned by that user, writable by no one
//!   else, and carries a header: what it was compiled from (the module's sha256 and the
//!   engine's compatibility key) and the sha256 of the code after it. An entry whose header,
//!   permissions or hash do not match is not deserialised: it is removed, a warning names it,
//!   and the module is compiled again. (The hash catches corruption and mix-ups, such as a
//!   truncated file or one copied under another name; against a writer who recomputes it,
//!   the permission checks are the defence.)
//! - **Writes** go to a 0600 temporary file beside the entry, renamed into place, so a reader
//!   never sees half an entry. A failed write (a full disk, a read-only volume) is a warning:
//!   the module loads from the code just compiled.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// The first bytes of every entry: the format and its version.
const MAGIC: &[u8; 16] = b"clonekeeper-cw1\n";
/// Magic, the module's sha256, the engine key (8 bytes), the code's sha256.
const HEADER_LEN: usize = MAGIC.len() + 32 + 8 + 32;

/// Why the cache folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("policy.cache_dir {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("policy.cache_dir {path}: {problem}; compiled code is not cached")]
    Untrusted { path: PathBuf, problem: String },
}

/// A cache folder that passed the checks.
#[derive(Debug)]
pub struct CodeCache {
    dir: PathBuf,
    /// Hex of the engine's compatibility hash: part of every file name and header.
    engine_key: [u8; 8],
}

impl CodeCache {
    /// Opens (creating it with mode 0700 if missing) and checks the cache folder.
    pub fn open(dir: &Path, engine_key: [u8; 8]) -> Result<CodeCache, CacheError> {
        let io = |source| CacheError::Io { path: dir.to_path_buf(), source };
        if !dir.exists() {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
        }
        let cache = CodeCache { dir: dir.to_path_buf(), engine_key };
        cache.check_dir()?;
        Ok(cache)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder is a directory of ours that no one else may write.
    fn check_dir(&self) -> Result<(), CacheError> {
        let untrusted = |problem: String| CacheError::Untrusted { path: self.dir.clone(), problem };
        let meta = fs::metadata(&self.dir).map_err(|source| CacheError::Io { path: self.dir.clone(), source })?;
        if !meta.is_dir() {
            return Err(untrusted("is not a directory".to_string()));
        }
        check_owner_and_mode(&meta).map_err(untrusted)
    }

    /// Where the code of module `digest` is cached.
    pub fn entry_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", hex::encode(self.engine_key)))
    }

    /// The cached code of module `digest` (its sha256, hex), verified; `None` when there is
    /// none or it failed a check (then it is removed, with a warning).
    pub fn lookup(&self, digest: &str) -> Option<Vec<u8>> {
        let path = self.entry_path(digest);
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "Reading a cached policy failed; compiling it again.");
                return None;
            }
        };
        if let Err(problem) = self.check_dir() {
            tracing::warn!(error = %problem, "The policy cache folder is no longer trusted; compiling instead.");
            return None;
        }
        let verified = (|| {
            if !meta.file_type().is_file() {
                return Err("is not a regular file".to_string());
            }
            check_owner_and_mode(&meta)?;
            let bytes = fs::read(&path).map_err(|e| format!("cannot be read: {e}"))?;
            self.verify(&bytes, digest)?;
            Ok(bytes)
        })();
        match verified {
            Ok(mut bytes) => {
                bytes.drain(..HEADER_LEN);
                Some(bytes)
            }
            Err(problem) => {
                tracing::warn!(
                    path = %path.display(),
                    problem,
                    "A cached policy entry failed its check; removing it and compiling the module again."
                );
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Checks an entry's header against what it must have been compiled from, and its hash.
    fn verify(&self, bytes: &[u8], digest: &str) -> Result<(), String> {
        let header = bytes.get(..HEADER_LEN).ok_or("is shorter than its header")?;
        let (magic, rest) = header.split_at(MAGIC.len());
        let (source, rest) = rest.split_at(32);
        let (engine_key, code_hash) = rest.split_at(8);
        if magic != MAGIC {
            return Err("has no clonekeeper cache header".to_string());
        }
        if hex::encode(source) != digest.to_ascii_lowercase() {
            return Err(format!("was compiled from module sha256:{}, not {digest}", hex::encode(source)));
        }
        if engine_key != self.engine_key {
            return Err("was compiled by another engine".to_string());
        }
        if Sha256::digest(&bytes[HEADER_LEN..]).as_slice() != code_hash {
            return Err("its code does not match its sha256 (changed or truncated)".to_string());
        }
        Ok(())
    }

    /// Stores `code` for module `digest`, atomically, mode 0600. A failure is only logged.
    pub fn store(&self, digest: &str, code: &[u8]) {
        let path = self.entry_path(digest);
        if let Err(error) = self.write_entry(&path, digest, code) {
            tracing::warn!(
                path = %path.display(),
                %error,
                "Caching precompiled policy code failed; the module loads from the code just compiled."
            );
        }
    }

    fn write_entry(&self, path: &Path, digest: &str, code: &[u8]) -> std::io::Result<()> {
        let source = hex::decode(digest).ok().filter(|s| s.len() == 32).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{digest} is not a sha256 digest"))
        })?;
        let mut file = tempfile::Builder::new().prefix(".cwasm-").tempfile_in(&self.dir)?;
        file.as_file().set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(MAGIC)?;
        file.write_all(&source)?;
        file.write_all(&self.engine_key)?;
        file.write_all(&Sha256::digest(code))?;
        file.write_all(code)?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Owned by the effective user, writable by no one else.
fn check_owner_and_mode(meta: &fs::Metadata) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        return Err(format!("is owned by uid {}, not by uid {euid} that clonekeeper runs as", meta.uid()));
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(format!("is writable by group or others (mode {:o}); chmod go-w it", mode & 0o7777));
    }
    Ok(())
}
