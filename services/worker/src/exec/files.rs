//! The steps the worker carries out itself, without a process: reading and writing a file
//! inside its roots.

use tokio::sync::mpsc;

use super::output::utf8_boundary;
use super::{Ctx, End};
use crate::outbox::Reporter;

/// The most of a file `file_read` sends back.
const READ_LIMIT: u64 = 8 << 20;

pub(super) async fn read_file(index: usize, path: &str, ctx: &Ctx, rep: &Reporter) -> End {
    let p = match ctx.roots.confine(path, true) {
        Ok(p) => p,
        Err(e) => return End::Refused(e.to_string()),
    };
    // Read on one blocking thread, piece by piece (a handful in flight): one hand-off per
    // file rather than one per open and per read.
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let mut file = match std::fs::File::open(&p) {
            Ok(f) => f.take(READ_LIMIT + 1),
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        loop {
            let mut buf = vec![0u8; 64 * 1024];
            match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    // Gone: the step stopped reading (truncated).
                    if tx.blocking_send(Ok(buf)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let mut total = 0u64;
    let mut carry: Vec<u8> = Vec::new();
    while let Some(piece) = rx.recv().await {
        match piece {
            Ok(piece) => {
                let n = piece.len();
                total += n as u64;
                let take = if total > READ_LIMIT {
                    n - (total - READ_LIMIT) as usize
                } else {
                    n
                };
                carry.extend_from_slice(&piece[..take]);
                let cut = utf8_boundary(&carry);
                let rest = carry.split_off(cut);
                rep.log("stdout", Some(index), &carry).await;
                carry = rest;
                if total > READ_LIMIT {
                    rep.log("stdout", Some(index), &carry).await;
                    rep.system(Some(index), &format!("(truncated at {READ_LIMIT} bytes)"))
                        .await;
                    return End::Exited(0);
                }
            }
            Err(e) => {
                rep.log("stderr", Some(index), format!("{path}: {e}\n").as_bytes())
                    .await;
                return End::Exited(1);
            }
        }
    }
    rep.log("stdout", Some(index), &carry).await;
    End::Exited(0)
}

pub(super) async fn write_file(
    path: &str,
    content: &str,
    append: bool,
    ctx: &Ctx,
    rep: &Reporter,
    index: usize,
) -> End {
    let p = match ctx.roots.confine(path, false) {
        Ok(p) => p,
        Err(e) => return End::Refused(e.to_string()),
    };
    let result = (|| -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true);
        if append {
            opts.append(true);
        } else {
            opts.truncate(true);
        }
        // Never write through a symlink planted after the path was checked.
        opts.custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits());
        let mut f = opts.open(&p)?;
        f.write_all(content.as_bytes())?;
        f.sync_data()
    })();
    match result {
        Ok(()) => {
            rep.system(
                Some(index),
                &format!("wrote {} bytes to {}", content.len(), p.display()),
            )
            .await;
            End::Exited(0)
        }
        Err(e) => {
            rep.log("stderr", Some(index), format!("{path}: {e}\n").as_bytes())
                .await;
            End::Exited(1)
        }
    }
}
