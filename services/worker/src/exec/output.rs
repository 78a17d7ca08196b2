//! A step's output: read from its pipes, collected into runs of one stream, and sent in
//! small batches without splitting a UTF-8 character (or a secret about to be masked).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use crate::outbox::Reporter;

/// Flush output after this long, or when this much is buffered.
const BATCH_WINDOW: Duration = Duration::from_millis(20);
const BATCH_BYTES: usize = 16 * 1024;

pub(super) async fn pump<R: tokio::io::AsyncRead + Unpin>(
    mut r: R,
    stream: &'static str,
    tx: mpsc::Sender<(&'static str, Vec<u8>)>,
) {
    let mut buf = vec![0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx.send((stream, buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Collects output into runs (consecutive bytes of one stream) and sends them every
/// `BATCH_WINDOW` or `BATCH_BYTES`, keeping an incomplete UTF-8 character for the next run.
pub(super) async fn batch_output(
    mut rx: mpsc::Receiver<(&'static str, Vec<u8>)>,
    rep: Reporter,
    step: usize,
) {
    let mut runs: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let mut size = 0usize;
    let mut first_at: Option<tokio::time::Instant> = None;
    let mut carry: BTreeMap<&'static str, Vec<u8>> = BTreeMap::new();
    loop {
        let flush_at = first_at.map(|t| t + BATCH_WINDOW);
        let next = tokio::select! {
            m = rx.recv() => m,
            _ = async { tokio::time::sleep_until(flush_at.unwrap_or_else(tokio::time::Instant::now)).await }, if flush_at.is_some() => {
                flush(&mut runs, &mut carry, &rep, step, false).await;
                size = 0;
                first_at = None;
                continue;
            }
        };
        match next {
            Some((stream, mut data)) => {
                if let Some(mut c) = carry.remove(stream) {
                    c.append(&mut data);
                    data = c;
                }
                size += data.len();
                match runs.last_mut() {
                    Some((s, buf)) if *s == stream => buf.extend_from_slice(&data),
                    _ => runs.push((stream, data)),
                }
                first_at.get_or_insert_with(tokio::time::Instant::now);
                if size >= BATCH_BYTES {
                    flush(&mut runs, &mut carry, &rep, step, false).await;
                    size = 0;
                    first_at = None;
                }
            }
            None => {
                flush(&mut runs, &mut carry, &rep, step, true).await;
                return;
            }
        }
    }
}

async fn flush(
    runs: &mut Vec<(&'static str, Vec<u8>)>,
    carry: &mut BTreeMap<&'static str, Vec<u8>>,
    rep: &Reporter,
    step: usize,
    last: bool,
) {
    let count = runs.len();
    for (i, (stream, mut data)) in runs.drain(..).enumerate() {
        // Only the newest run of a stream can end mid-character, or mid-secret.
        if !last && i + 1 == count {
            let (mut head, rest) = rep.redact_split(&data);
            let cut = utf8_boundary(&head);
            let mut keep = head.split_off(cut);
            keep.extend_from_slice(&rest);
            if !keep.is_empty() {
                carry.insert(stream, keep);
            }
            data = head;
        }
        rep.log(stream, Some(step), &data).await;
    }
    if last {
        for (stream, data) in std::mem::take(carry) {
            rep.log(stream, Some(step), &data).await;
        }
    }
}

/// The length of `data` without a trailing incomplete UTF-8 sequence.
pub(super) fn utf8_boundary(data: &[u8]) -> usize {
    match std::str::from_utf8(data) {
        Ok(_) => data.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => data.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_boundaries_keep_characters_whole() {
        let s = "héllo".as_bytes();
        assert_eq!(utf8_boundary(s), s.len());
        assert_eq!(utf8_boundary(&s[..2]), 1);
        assert_eq!(utf8_boundary(&[0xff, b'a']), 2);
    }
}
