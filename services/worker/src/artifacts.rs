//! Uploading the files steps declare as `artifacts` to the `skynet-artifacts` object store,
//! under `<job_id>/<path>`. Every match must lie inside the worker's roots, and a file over
//! the size cap is an error, not a silent omission. The worker stores the chunks under its
//! own id and reports the object's metadata through its outbox; the dispatcher names the
//! object for the job's current attempt only (`skynet_protocol::artifact`).

use std::path::{Path, PathBuf};

use async_nats::jetstream::object_store::{ObjectInfo, ObjectOptions};
use globset::Glob;
use skynet_protocol::{streams, subjects};
use tokio::io::AsyncReadExt as _;

use crate::outbox::Reporter;

use crate::paths::{Roots, expand_home};

/// Most files one pattern may match, and the deepest directory walked.
const MAX_MATCHES: usize = 1_000;
const MAX_DEPTH: usize = 16;
const MAX_WALK: usize = 50_000;

/// A file to upload: where it is, and its name under the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    pub name: String,
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// Resolves `pattern` against `cwd` into files inside the roots.
pub fn resolve(pattern: &str, cwd: &Path, roots: &Roots) -> Result<Vec<Found>, String> {
    let expanded = expand_home(Path::new(pattern), roots.home());
    if !has_glob(pattern) {
        let full = if expanded.is_absolute() {
            expanded.clone()
        } else {
            cwd.join(&expanded)
        };
        let p = roots
            .confine(&full.to_string_lossy(), true)
            .map_err(|e| format!("artifact {pattern}: {e}"))?;
        if !p.is_file() {
            return Err(format!("artifact {pattern}: not a file"));
        }
        // A relative path keeps its directories in the name; anything else is named by file.
        let plain = !expanded.is_absolute()
            && expanded
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        let name = if plain {
            expanded.to_string_lossy().into_owned()
        } else {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "artifact".into())
        };
        return Ok(vec![Found { path: p, name }]);
    }
    let (base, glob) = if expanded.is_absolute() {
        // Split at the first component with a glob character.
        let mut base = PathBuf::from("/");
        let mut rest = Vec::new();
        for c in expanded.components().skip(1) {
            let c = c.as_os_str().to_string_lossy().into_owned();
            if rest.is_empty() && !has_glob(&c) {
                base.push(&c);
            } else {
                rest.push(c);
            }
        }
        (base, rest.join("/"))
    } else {
        (cwd.to_path_buf(), expanded.to_string_lossy().into_owned())
    };
    let base = roots
        .confine(&base.to_string_lossy(), true)
        .map_err(|e| format!("artifact {pattern}: {e}"))?;
    let matcher = Glob::new(&glob)
        .map_err(|e| format!("artifact {pattern}: bad pattern: {e}"))?
        .compile_matcher();
    let mut found = Vec::new();
    let mut walked = 0usize;
    let mut stack = vec![(base.clone(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            walked += 1;
            if walked > MAX_WALK {
                return Err(format!(
                    "artifact {pattern}: too many files under {}",
                    base.display()
                ));
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            // Symlinks are not followed: a link could point outside the roots.
            if kind.is_dir() && depth < MAX_DEPTH {
                stack.push((path.clone(), depth + 1));
            }
            if kind.is_file() {
                let Ok(rel) = path.strip_prefix(&base) else {
                    continue;
                };
                if matcher.is_match(rel) {
                    found.push(Found {
                        name: rel.to_string_lossy().into_owned(),
                        path,
                    });
                    if found.len() > MAX_MATCHES {
                        return Err(format!(
                            "artifact {pattern}: matches more than {MAX_MATCHES} files"
                        ));
                    }
                }
            }
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Chunks of an artifact (what `async-nats` uses for objects).
const CHUNK: usize = 128 * 1024;

/// Uploads one file of `step`, refusing it past `max_bytes`. Returns its size.
pub async fn upload(
    js: &async_nats::jetstream::Context,
    rep: &Reporter,
    step: usize,
    file: &Found,
    max_bytes: u64,
) -> Result<u64, String> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let size = std::fs::metadata(&file.path)
        .map_err(|e| format!("artifact {}: {e}", file.name))?
        .len();
    if size > max_bytes {
        return Err(format!(
            "artifact {} is {size} bytes; the limit is {max_bytes}",
            file.name
        ));
    }
    let mut f = tokio::fs::File::open(&file.path)
        .await
        .map_err(|e| format!("artifact {}: {e}", file.name))?;
    let nuid = skynet_protocol::artifact::new_nuid(rep.worker());
    let subject = subjects::artifact_chunks(&nuid);
    let (mut sha, mut total, mut chunks) = (sha2::Sha256::new(), 0usize, 0usize);
    let mut buf = bytes::BytesMut::with_capacity(CHUNK);
    loop {
        buf.clear();
        while buf.len() < CHUNK {
            let n = (&mut f)
                .take((CHUNK - buf.len()) as u64)
                .read_buf(&mut buf)
                .await
                .map_err(|e| format!("artifact {}: {e}", file.name))?;
            if n == 0 {
                break;
            }
        }
        if buf.is_empty() {
            break;
        }
        let payload = buf.split().freeze();
        sha.update(&payload);
        total += payload.len();
        chunks += 1;
        js.publish(subject.clone(), payload)
            .await
            .map_err(|e| format!("uploading artifact {}: {e}", file.name))?
            .await
            .map_err(|e| format!("uploading artifact {}: {e}", file.name))?;
    }
    let job = &rep.job;
    let info = ObjectInfo {
        name: format!("{}{}", streams::artifact_prefix(job), file.name),
        description: Some(format!("artifact of job {job}, step {}", step + 1)),
        metadata: [
            ("job_id".to_owned(), job.to_string()),
            ("attempt".to_owned(), rep.attempt.to_string()),
            ("step".to_owned(), step.to_string()),
            ("worker".to_owned(), rep.worker().to_string()),
        ]
        .into(),
        headers: None,
        options: Some(ObjectOptions {
            max_chunk_size: Some(CHUNK),
            link: None,
        }),
        bucket: streams::ARTIFACTS_BUCKET.into(),
        nuid,
        size: total,
        chunks,
        modified: None,
        digest: Some(format!(
            "SHA-256={}",
            base64::engine::general_purpose::URL_SAFE.encode(sha.finalize())
        )),
        deleted: false,
    };
    let body = serde_json::to_vec(&info).map_err(|e| format!("artifact {}: {e}", file.name))?;
    rep.artifact(body.into()).await;
    Ok(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_inside_the_roots_only() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let app = home.join("app");
        std::fs::create_dir_all(app.join("target/reports")).unwrap();
        std::fs::write(app.join("target/reports/a.xml"), "a").unwrap();
        std::fs::write(app.join("target/reports/b.xml"), "b").unwrap();
        std::fs::write(app.join("target/log.txt"), "l").unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/secret.xml"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), app.join("target/link")).unwrap();
        let roots = Roots::new(std::slice::from_ref(&home), home.clone()).unwrap();

        let found = resolve("target/**/*.xml", &app, &roots).unwrap();
        let names: Vec<_> = found.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["target/reports/a.xml", "target/reports/b.xml"]);
        let one = resolve("target/log.txt", &app, &roots).unwrap();
        assert_eq!(one[0].name, "target/log.txt");
        let up = resolve("../app/target/log.txt", &app, &roots).unwrap();
        assert_eq!(up[0].name, "log.txt");
        let abs = resolve("~/app/target/reports/*.xml", &app, &roots).unwrap();
        assert_eq!(abs.len(), 2);
        assert!(
            resolve(
                &dir.path().join("outside/secret.xml").to_string_lossy(),
                &app,
                &roots
            )
            .is_err()
        );
        assert!(resolve("target/link/secret.xml", &app, &roots).is_err());
        assert!(resolve("target/missing.txt", &app, &roots).is_err());
    }
}
