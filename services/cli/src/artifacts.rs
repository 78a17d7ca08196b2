//! `skynet artifacts`: listing a job's files in the `skynet-artifacts` object store, and
//! downloading them into a directory the caller names.

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use async_nats::jetstream;
use futures::StreamExt;
use skynet_protocol::{JobId, streams};

/// Where an object lands under `dir`, refusing names that would climb out of it.
fn target(dir: &Path, rel: &str) -> Option<PathBuf> {
    let rel = Path::new(rel);
    if rel.components().all(|c| matches!(c, Component::Normal(_))) {
        Some(dir.join(rel))
    } else {
        None
    }
}

/// Lists the job's artifacts, or downloads them into `out`.
pub async fn fetch(
    client: &async_nats::Client,
    job: &JobId,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let js = jetstream::new(client.clone());
    let store = js.get_object_store(streams::ARTIFACTS_BUCKET).await?;
    let prefix = streams::artifact_prefix(job);
    let mut names = Vec::new();
    let mut list = store.list().await?;
    while let Some(info) = list.next().await {
        let info = info?;
        if !info.deleted && info.name.starts_with(&prefix) {
            names.push((info.name.clone(), info.size));
        }
    }
    if names.is_empty() {
        eprintln!("job {job} kept no artifacts");
        return Ok(ExitCode::SUCCESS);
    }
    names.sort();
    let Some(dir) = out else {
        for (name, size) in &names {
            println!("{}  ({size} bytes)", &name[prefix.len()..]);
        }
        eprintln!("download them with: skynet artifacts {job} --out DIR");
        return Ok(ExitCode::SUCCESS);
    };
    for (name, size) in names {
        let rel = &name[prefix.len()..];
        let Some(path) = target(dir, rel) else {
            eprintln!("skipping {name}: not a safe file name");
            continue;
        };
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let mut object = store.get(&name).await?;
        let mut file = tokio::fs::File::create(&path).await?;
        tokio::io::copy(&mut object, &mut file).await?;
        println!("{} ({size} bytes)", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_climb_out_of_the_directory() {
        let d = Path::new("/tmp/out");
        assert_eq!(
            target(d, "reports/a.xml"),
            Some(PathBuf::from("/tmp/out/reports/a.xml"))
        );
        assert_eq!(target(d, "../etc/passwd"), None);
        assert_eq!(target(d, "/etc/passwd"), None);
    }
}
