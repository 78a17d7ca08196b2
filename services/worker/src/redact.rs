//! Redacting configured secrets from output before it leaves the machine.

use bytes::Bytes;

const MASK: &[u8] = b"[REDACTED]";

/// Replaces every occurrence of each secret with `[REDACTED]`.
#[derive(Default)]
pub struct Redactor {
    secrets: Vec<Vec<u8>>,
}

impl Redactor {
    /// Secrets shorter than 4 bytes are ignored: masking them would mangle ordinary output.
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<Vec<u8>> = secrets
            .into_iter()
            .filter(|s| s.len() >= 4)
            .map(String::into_bytes)
            .collect();
        // Longest first, so a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { secrets }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The longest secret, so callers can keep that much back across chunk boundaries.
    pub fn longest(&self) -> usize {
        self.secrets.first().map_or(0, Vec::len)
    }

    /// Masks `data` and splits it where the rest might be the start of a secret that the
    /// next output completes: the first part is safe to send, the second must wait.
    pub fn split(&self, data: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut masked = self.apply(data).to_vec();
        if self.secrets.is_empty() {
            return (masked, Vec::new());
        }
        let len = masked.len();
        let start = len.saturating_sub(self.longest().saturating_sub(1));
        let cut = (start..len)
            .find(|&i| {
                let tail = &masked[i..];
                self.secrets
                    .iter()
                    .any(|s| s.len() > tail.len() && s.starts_with(tail))
            })
            .unwrap_or(len);
        let rest = masked.split_off(cut);
        (masked, rest)
    }

    pub fn apply(&self, data: &[u8]) -> Bytes {
        if self.secrets.is_empty() {
            return Bytes::copy_from_slice(data);
        }
        let mut out = Vec::with_capacity(data.len());
        let mut i = 0;
        'outer: while i < data.len() {
            for s in &self.secrets {
                if data[i..].starts_with(s) {
                    out.extend_from_slice(MASK);
                    i += s.len();
                    continue 'outer;
                }
            }
            out.push(data[i]);
            i += 1;
        }
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_short_ones_ignored() {
        let r = Redactor::new([
            "hunter22".to_string(),
            "abc".to_string(),
            "hunter2".to_string(),
        ]);
        assert_eq!(
            &r.apply(b"pw=hunter22 and hunter2, abc")[..],
            b"pw=[REDACTED] and [REDACTED], abc"
        );
        assert_eq!(r.longest(), 8);
        assert!(Redactor::new(Vec::<String>::new()).is_empty());
    }

    #[test]
    fn a_secret_split_across_chunks_is_held_back_until_it_is_whole() {
        let r = Redactor::new(["s3cr3t-token".to_string()]);
        let (send, keep) = r.split(b"token=s3cr3t-to");
        assert_eq!(send, b"token=");
        assert_eq!(keep, b"s3cr3t-to");
        let mut next = keep;
        next.extend_from_slice(b"ken and more");
        let (send, keep) = r.split(&next);
        assert_eq!(send, b"[REDACTED] and more");
        assert!(keep.is_empty());
        let (send, keep) = r.split(b"nothing secret here");
        assert_eq!(send, b"nothing secret here");
        assert!(keep.is_empty());
    }
}
