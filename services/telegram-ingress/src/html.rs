//! Telegram's HTML parse mode: escaping, measuring text the way Telegram counts it, and
//! cutting documents to its limits.
//!
//! Telegram counts a message's length after parsing (tags do not count, `&lt;` is one
//! character) in UTF-16 code units, and refuses anything over 4096. Everything the bot sends
//! is built as a [`Doc`] of lines and preformatted blocks, so it can be split between lines
//! without ever cutting a tag or an entity in half.

/// The most characters one message may hold, after entity parsing.
pub const MAX_MESSAGE: usize = 4096;
/// The most characters a document caption may hold.
pub const MAX_CAPTION: usize = 1024;

/// Escapes text for HTML parse mode. Every piece of text that did not come from this crate
/// (goals, commands, output, names, reasons) goes through here.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Length of raw text in UTF-16 code units, as Telegram counts it.
pub fn text_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// The visible text of HTML produced by this crate: tags dropped, entities decoded.
pub fn visible(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut chars = html.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '<' => {
                for c in chars.by_ref() {
                    if c == '>' {
                        break;
                    }
                }
            }
            '&' => {
                let mut entity = String::new();
                while let Some(&n) = chars.peek() {
                    if n == ';' || entity.len() > 8 {
                        break;
                    }
                    entity.push(n);
                    chars.next();
                }
                if chars.peek() == Some(&';') {
                    chars.next();
                }
                out.push(match entity.as_str() {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "quot" => '"',
                    _ => '?',
                });
            }
            c => out.push(c),
        }
    }
    out
}

/// The length Telegram counts for HTML produced by this crate.
pub fn visible_len(html: &str) -> usize {
    text_len(&visible(html))
}

/// Cuts raw text to at most `max` UTF-16 units, ending it with `…` when cut.
pub fn clip(s: &str, max: usize) -> String {
    if text_len(s) <= max {
        return s.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.len_utf16();
        if used + w + 1 > max {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// Raw text cut into pieces of at most `max` UTF-16 units (at least one character each).
fn hard_split(s: &str, max: usize) -> Vec<String> {
    let max = max.max(2);
    let mut pieces = Vec::new();
    let mut cur = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.len_utf16();
        if used + w > max && !cur.is_empty() {
            pieces.push(std::mem::take(&mut cur));
            used = 0;
        }
        cur.push(c);
        used += w;
    }
    if !cur.is_empty() || pieces.is_empty() {
        pieces.push(cur);
    }
    pieces
}

#[derive(Debug, Clone, PartialEq)]
enum Block {
    /// One line of HTML built by this crate (escaped where needed).
    Line(String),
    /// Raw text shown preformatted; escaped when rendered.
    Pre(String),
}

/// A message under construction: lines of HTML and preformatted blocks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Doc {
    blocks: Vec<Block>,
}

impl Doc {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a line of HTML (callers escape what they put in it).
    pub fn line(&mut self, html: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Line(html.into()));
        self
    }

    /// Adds raw text as a preformatted block (escaped here). Empty text adds nothing.
    pub fn pre(&mut self, raw: impl Into<String>) -> &mut Self {
        let raw = raw.into();
        if !raw.trim().is_empty() {
            self.blocks.push(Block::Pre(raw));
        }
        self
    }

    /// The whole document as one HTML string.
    pub fn render(&self) -> String {
        self.blocks
            .iter()
            .map(|b| match b {
                Block::Line(h) => h.clone(),
                Block::Pre(raw) => format!("<pre>{}</pre>", esc(raw)),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The visible length of [`Doc::render`].
    pub fn len(&self) -> usize {
        let mut n = 0;
        for (i, b) in self.blocks.iter().enumerate() {
            if i > 0 {
                n += 1;
            }
            n += match b {
                Block::Line(h) => visible_len(h),
                Block::Pre(raw) => text_len(raw),
            };
        }
        n
    }

    /// The document cut into messages of at most `limit` characters each, split between
    /// lines (and inside a preformatted block between its lines, each part in its own
    /// `<pre>`). A line longer than a whole message is cut where it must be. Never empty.
    pub fn split(&self, limit: usize) -> Vec<String> {
        let limit = limit.max(16);
        let mut out: Vec<String> = Vec::new();
        let mut cur = String::new();
        let mut cur_len = 0usize;

        fn push(
            out: &mut Vec<String>,
            cur: &mut String,
            cur_len: &mut usize,
            html: &str,
            len: usize,
            limit: usize,
        ) {
            let sep = usize::from(!cur.is_empty());
            if !cur.is_empty() && *cur_len + sep + len > limit {
                out.push(std::mem::take(cur));
                *cur_len = 0;
            }
            if !cur.is_empty() {
                cur.push('\n');
                *cur_len += 1;
            }
            cur.push_str(html);
            *cur_len += len;
        }

        for block in &self.blocks {
            match block {
                Block::Line(h) => {
                    let len = visible_len(h);
                    if len <= limit {
                        push(&mut out, &mut cur, &mut cur_len, h, len, limit);
                    } else {
                        // Only a line built from very long text gets here: send it plain.
                        for piece in hard_split(&visible(h), limit) {
                            let len = text_len(&piece);
                            push(&mut out, &mut cur, &mut cur_len, &esc(&piece), len, limit);
                        }
                    }
                }
                Block::Pre(raw) => {
                    let mut pending: Vec<String> = Vec::new();
                    let mut pending_len = 0usize;
                    let lines: Vec<String> = raw
                        .split('\n')
                        .flat_map(|l| hard_split(l, limit - 1))
                        .collect();
                    for line in lines {
                        let add = text_len(&line) + usize::from(!pending.is_empty());
                        let room = limit.saturating_sub(cur_len + usize::from(!cur.is_empty()));
                        if pending_len + add > room {
                            if !pending.is_empty() {
                                let text = pending.join("\n");
                                let html = format!("<pre>{}</pre>", esc(&text));
                                push(&mut out, &mut cur, &mut cur_len, &html, pending_len, limit);
                                pending.clear();
                            }
                            if !cur.is_empty() {
                                out.push(std::mem::take(&mut cur));
                                cur_len = 0;
                            }
                            pending_len = text_len(&line);
                            pending.push(line);
                        } else {
                            pending_len += add;
                            pending.push(line);
                        }
                    }
                    if !pending.is_empty() {
                        let text = pending.join("\n");
                        let html = format!("<pre>{}</pre>", esc(&text));
                        push(&mut out, &mut cur, &mut cur_len, &html, pending_len, limit);
                    }
                }
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        // Telegram refuses messages that are empty or only white space.
        out.retain(|m| !visible(m).trim().is_empty());
        if out.is_empty() {
            out.push("(nothing to show)".into());
        }
        out
    }

    /// The document as one message of at most `limit` characters: whatever does not fit
    /// is dropped from the end, with a note that it was.
    pub fn fit(&self, limit: usize) -> String {
        if self.len() <= limit {
            return self.render();
        }
        let note = "…(shortened)";
        let parts = self.split(limit.saturating_sub(text_len(note) + 1));
        format!("{}\n{note}", parts[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped() {
        assert_eq!(
            esc(r#"<b>x</b> & "y""#),
            "&lt;b&gt;x&lt;/b&gt; &amp; &quot;y&quot;"
        );
        let html = format!("<b>{}</b>", esc("a<b>&c"));
        assert_eq!(visible(&html), "a<b>&c");
        assert_eq!(visible_len(&html), 6);
    }

    #[test]
    fn lengths_count_utf16_units() {
        assert_eq!(text_len("abc"), 3);
        assert_eq!(text_len("é"), 1);
        assert_eq!(text_len("😀"), 2);
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
        // Never cuts a character in half.
        assert_eq!(text_len(&clip("😀😀😀", 4)), 3);
    }

    fn balanced(html: &str) -> bool {
        html.matches("<pre>").count() == html.matches("</pre>").count()
            && html.matches("<b>").count() == html.matches("</b>").count()
    }

    #[test]
    fn long_documents_split_between_lines_and_keep_pre_blocks_whole() {
        let mut doc = Doc::new();
        doc.line("<b>Output</b>");
        let raw: String = (0..2000).map(|i| format!("line {i} <&>\n")).collect();
        doc.pre(&raw);
        doc.line("<i>end</i>");
        let parts = doc.split(MAX_MESSAGE);
        assert!(parts.len() > 1);
        let mut seen = String::new();
        for p in &parts {
            assert!(visible_len(p) <= MAX_MESSAGE, "{}", visible_len(p));
            assert!(balanced(p), "{p}");
            seen.push_str(&visible(p));
            seen.push('\n');
        }
        for i in [0, 999, 1999] {
            assert!(seen.contains(&format!("line {i} <&>")), "line {i} lost");
        }
        assert!(seen.contains("end"));
    }

    #[test]
    fn a_single_huge_line_is_cut_not_lost() {
        let mut doc = Doc::new();
        doc.pre("x".repeat(10_000));
        doc.line(esc(&"<".repeat(9_000)));
        let parts = doc.split(MAX_MESSAGE);
        let total: usize = parts.iter().map(|p| visible_len(p)).sum();
        assert!(total >= 19_000);
        for p in &parts {
            assert!(visible_len(p) <= MAX_MESSAGE);
            assert!(balanced(p));
        }
    }

    #[test]
    fn fit_keeps_one_message_and_says_it_was_shortened() {
        let mut doc = Doc::new();
        doc.line("head");
        doc.pre("y\n".repeat(5000));
        let one = doc.fit(MAX_MESSAGE);
        assert!(visible_len(&one) <= MAX_MESSAGE);
        assert!(one.starts_with("head"));
        assert!(one.ends_with("(shortened)"));
        assert!(balanced(&one));
        let small = Doc::new().line("hi").clone();
        assert_eq!(small.fit(MAX_MESSAGE), "hi");
    }

    #[test]
    fn empty_documents_still_make_a_message() {
        assert_eq!(Doc::new().split(MAX_MESSAGE), vec!["(nothing to show)"]);
        let mut d = Doc::new();
        d.pre("   ");
        assert_eq!(d, Doc::new(), "white space alone adds nothing");
    }
}
