//! The `rules` planner: offline and deterministic. It understands a documented set of
//! phrasings (see the crate's README) and every skill by name; anything else is refused with
//! a reason that says why and what would work.
//!
//! A goal is read as words, paths (`~/x`, `/x`, `./x`, `a/b`) and quoted text (`"..."`,
//! `'...'`, `` `...` ``). Each phrasing is a keyword plus words it tolerates around it, so
//! word order is free but an unknown word means "not understood", never a guess. A goal that
//! is not one phrasing is split into clauses at `,`, `;`, "and" and "then", and each clause
//! must be one.

use serde_json::{Map, Value};
use skynet_protocol::{GitOp, JobRequest, Step};

use crate::skills::{ArgType, Skills};

/// The command the memory phrasing runs: `free` on Linux, `top` on macOS (both read-only).
pub const MEMORY_CMD: &str = "free -h 2>/dev/null || top -l 1 -s 0 | head -n 12";

/// Examples of what the rules planner understands, for rejection messages.
const EXAMPLES: &str = "run `cargo test` in ~/src/app; run the tests in ~/src/app; \
build ~/src/app; git status (or diff, log) in ~/src/app; pull ~/src/app; sync ~/src/app; \
commit ~/src/app \"fix the typo\"; show ~/notes.txt; list ~/src; disk usage; memory usage; \
system info";

/// Why a goal could not be planned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Miss {
    /// No phrasing matched.
    NotUnderstood,
    /// A phrasing matched but something is missing or wrong; the text says what.
    Incomplete(String),
}

/// Plans `goal`. The steps may name skills; the caller expands them. The error is the
/// job's rejection reason.
pub fn plan(goal: &str, req: &JobRequest, skills: &Skills) -> Result<Vec<Step>, String> {
    let toks = tokenize(goal.trim())
        .map_err(|e| format!("the rules planner cannot read the goal: {e}"))?;
    let toks = strip_machine(toks, req)?;
    let sole_path = {
        let mut paths: Vec<&str> = toks
            .iter()
            .filter_map(|t| match t {
                Tok::Word(w) if is_path(w) => Some(w.as_str()),
                _ => None,
            })
            .collect();
        paths.dedup();
        match paths.as_slice() {
            [one] => Some(one.to_string()),
            _ => None,
        }
    };
    let mut ctx = Ctx {
        skills,
        last_path: None,
        sole_path,
    };
    let whole: Vec<Tok> = toks.iter().filter(|t| **t != Tok::Sep).cloned().collect();
    let first_try = plan_clause(&whole, &mut ctx.clone());
    let miss = match first_try {
        Ok(steps) => return Ok(steps),
        Err(m) => m,
    };
    let clauses = split_clauses(&toks);
    if clauses.len() > 1 {
        let mut steps = Vec::new();
        let mut failed = None;
        for clause in &clauses {
            match plan_clause(clause, &mut ctx) {
                Ok(s) => steps.extend(s),
                Err(m) => {
                    failed = Some((render(clause), m));
                    break;
                }
            }
        }
        match failed {
            None => return Ok(steps),
            Some((_, Miss::Incomplete(why))) => return Err(incomplete(goal, &why)),
            Some((text, Miss::NotUnderstood)) if miss == Miss::NotUnderstood => {
                return Err(not_understood(goal, Some(&text), skills));
            }
            Some(_) => {}
        }
    }
    match miss {
        Miss::Incomplete(why) => Err(incomplete(goal, &why)),
        Miss::NotUnderstood => Err(not_understood(goal, None, skills)),
    }
}

fn incomplete(goal: &str, why: &str) -> String {
    format!("the rules planner understood {goal:?} only in part: {why}")
}

fn not_understood(goal: &str, part: Option<&str>, skills: &Skills) -> String {
    let part = match part {
        Some(p) => format!(" (it is stuck at {p:?})"),
        None => String::new(),
    };
    format!(
        "the rules planner does not understand {goal:?}{part}. It plans phrasings such as: \
         {EXAMPLES}; and every skill by name ({}), e.g. `git_commit repo=~/src/app \
         message=\"fix\"`. Put commands in backticks. For free-form goals run the planner \
         with SKYNET_PLANNER=anthropic or SKYNET_PLANNER=openai, or submit explicit steps.",
        skills.names().join(", ")
    )
}

#[derive(Clone)]
struct Ctx<'a> {
    skills: &'a Skills,
    /// The path of the previous clause, for "it" and "there".
    last_path: Option<String>,
    /// The only path the whole goal names, for clauses that name none.
    sole_path: Option<String>,
}

// ---------------------------------------------------------------- reading the goal ---

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A word as written (paths keep their case).
    Word(String),
    /// Text in quotes; `backtick` for `` `...` ``.
    Quoted { text: String, backtick: bool },
    /// `,` or `;` between clauses.
    Sep,
}

fn tokenize(goal: &str) -> Result<Vec<Tok>, String> {
    let goal = goal.trim_end_matches(['.', '!', '?', ' ']);
    let chars: Vec<char> = goal.chars().collect();
    let mut toks = Vec::new();
    let mut word = String::new();
    let mut i = 0;
    let flush = |word: &mut String, toks: &mut Vec<Tok>| {
        if !word.is_empty() {
            toks.push(Tok::Word(std::mem::take(word)));
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let at_end_or_space = |j: usize| j >= chars.len() || chars[j].is_whitespace();
        match c {
            c if c.is_whitespace() => {
                flush(&mut word, &mut toks);
                i += 1;
            }
            ',' | ';' if at_end_or_space(i + 1) => {
                flush(&mut word, &mut toks);
                toks.push(Tok::Sep);
                i += 1;
            }
            '"' | '\'' | '`' | '“' | '‘' if word.is_empty() || word.ends_with('=') => {
                let close = match c {
                    '“' => '”',
                    '‘' => '’',
                    c => c,
                };
                let Some(len) = chars[i + 1..].iter().position(|&d| d == close) else {
                    if c == '`' || c == '"' {
                        return Err(format!("a {c} is never closed"));
                    }
                    // A lone apostrophe is just a character.
                    word.push(c);
                    i += 1;
                    continue;
                };
                let text: String = chars[i + 1..i + 1 + len].iter().collect();
                i += len + 2;
                if word.is_empty() {
                    toks.push(Tok::Quoted {
                        text,
                        backtick: c == '`',
                    });
                } else {
                    // key="value": the quotes only group the value.
                    word.push_str(&text);
                    flush(&mut word, &mut toks);
                }
            }
            c => {
                word.push(if c == '’' { '\'' } else { c });
                i += 1;
            }
        }
    }
    flush(&mut word, &mut toks);
    Ok(toks)
}

fn is_path(w: &str) -> bool {
    w.starts_with('~')
        || w.starts_with('/')
        || w.starts_with("./")
        || w.starts_with("../")
        || w == "."
        || w == ".."
        || (w.contains('/') && !w.contains("://") && !w.contains('='))
}

fn lower(w: &str) -> String {
    w.to_lowercase()
}

/// Drops a trailing "on (the) <machine>" when it agrees with where the request runs anyway;
/// otherwise explains that machines are chosen by the request, not the words.
fn strip_machine(mut toks: Vec<Tok>, req: &JobRequest) -> Result<Vec<Tok>, String> {
    let n = toks.len();
    let word = |i: usize| match toks.get(i) {
        Some(Tok::Word(w)) => Some(lower(w)),
        _ => None,
    };
    let (on_at, name) = match (
        n.checked_sub(3).and_then(word),
        word(n.wrapping_sub(2)),
        word(n.wrapping_sub(1)),
    ) {
        (Some(on), Some(the), Some(name))
            if on == "on" && matches!(the.as_str(), "the" | "my") && !is_path(&name) =>
        {
            (n - 3, name)
        }
        (_, Some(on), Some(name)) if on == "on" && !is_path(&name) => (n - 2, name),
        _ => return Ok(toks),
    };
    let agrees = req
        .worker
        .as_ref()
        .is_some_and(|w| lower(w.as_str()) == name)
        || req.labels.iter().any(|l| lower(l) == name);
    if !agrees {
        return Err(format!(
            "the rules planner does not pick machines from words: to run this on {name:?}, \
             submit it with `--worker {name}` or `--label {name}` (the request's \"worker\" \
             or \"labels\") and leave \"on {name}\" out of the goal"
        ));
    }
    toks.truncate(on_at);
    Ok(toks)
}

fn split_clauses(toks: &[Tok]) -> Vec<Vec<Tok>> {
    let mut clauses = vec![Vec::new()];
    for t in toks {
        let sep = match t {
            Tok::Sep => true,
            Tok::Word(w) => matches!(lower(w).as_str(), "and" | "then" | "afterwards"),
            Tok::Quoted { .. } => false,
        };
        if sep {
            clauses.push(Vec::new());
        } else if let Some(last) = clauses.last_mut() {
            last.push(t.clone());
        }
    }
    clauses.retain(|c| !c.is_empty());
    clauses
}

fn render(toks: &[Tok]) -> String {
    toks.iter()
        .map(|t| match t {
            Tok::Word(w) => w.clone(),
            Tok::Quoted {
                text,
                backtick: true,
            } => format!("`{text}`"),
            Tok::Quoted { text, .. } => format!("\"{text}\""),
            Tok::Sep => ",".into(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------- one clause ---------

/// Words any phrasing tolerates.
const COMMON: &[&str] = &[
    "the",
    "a",
    "an",
    "me",
    "my",
    "our",
    "please",
    "of",
    "in",
    "for",
    "at",
    "to",
    "inside",
    "under",
    "within",
    "show",
    "check",
    "get",
    "tell",
    "what",
    "whats",
    "what's",
    "is",
    "are",
    "this",
    "directory",
    "dir",
    "folder",
    "project",
    "repo",
    "repository",
    "now",
    "current",
    "currently",
    "can",
    "could",
    "would",
    "you",
    "i",
    "want",
    "let's",
    "lets",
    "do",
    "give",
    "kindly",
    "quickly",
    "just",
    "all",
    "with",
];

/// Words after which a bare word is a (relative) directory name.
const PREPOSITIONS: &[&str] = &["in", "of", "for", "at", "inside", "under", "within"];

/// Pronouns that stand for the previous clause's path.
const PRONOUNS: &[&str] = &["it", "there", "that"];

/// A clause, sorted into its parts.
#[derive(Debug, Default)]
struct Parts {
    /// Words (lower case) that are neither paths nor pronouns.
    words: Vec<String>,
    paths: Vec<String>,
    quoted: Vec<(String, bool)>,
    /// Bare words right after a preposition (maybe a relative directory).
    after_prep: Vec<String>,
    pronoun: bool,
}

impl Parts {
    fn of(toks: &[Tok]) -> Self {
        let mut p = Parts::default();
        let mut prev_prep = false;
        for t in toks {
            match t {
                Tok::Word(w) if is_path(w) => {
                    p.paths.push(w.clone());
                    prev_prep = false;
                }
                Tok::Word(w) => {
                    let l = lower(w);
                    if PRONOUNS.contains(&l.as_str()) {
                        p.pronoun = true;
                    } else {
                        if prev_prep {
                            p.after_prep.push(w.clone());
                        }
                        p.words.push(l.clone());
                    }
                    prev_prep = PREPOSITIONS.contains(&l.as_str());
                }
                Tok::Quoted { text, backtick } => {
                    p.quoted.push((text.clone(), *backtick));
                    prev_prep = false;
                }
                Tok::Sep => prev_prep = false,
            }
        }
        p
    }

    fn has(&self, any: &[&str]) -> bool {
        self.words.iter().any(|w| any.contains(&w.as_str()))
    }

    /// The keyword of `any` that the clause uses.
    fn which(&self, any: &[&'static str]) -> Option<&'static str> {
        any.iter()
            .copied()
            .find(|k| self.words.iter().any(|w| w == k))
    }

    /// Every word is a keyword, a common word, one of `extra`, or a bare directory name.
    fn only(&self, keywords: &[&str], extra: &[&str]) -> bool {
        self.words.iter().all(|w| {
            keywords.contains(&w.as_str())
                || COMMON.contains(&w.as_str())
                || extra.contains(&w.as_str())
                || self.after_prep.iter().any(|a| lower(a) == *w)
        })
    }

    /// The one path the clause names: a path, a bare name after a preposition, a pronoun for
    /// the previous clause's path, or (with `borrow`) the goal's only path.
    fn path(
        &self,
        ctx: &Ctx,
        keywords: &[&str],
        extra: &[&str],
        borrow: bool,
    ) -> Result<Option<String>, Miss> {
        let bare: Vec<&String> = self
            .after_prep
            .iter()
            .filter(|a| {
                let l = lower(a);
                !keywords.contains(&l.as_str())
                    && !COMMON.contains(&l.as_str())
                    && !extra.contains(&l.as_str())
            })
            .collect();
        let mut found: Vec<String> = self.paths.clone();
        found.extend(bare.into_iter().cloned());
        if self.pronoun {
            match &ctx.last_path {
                Some(p) => found.push(p.clone()),
                None => {
                    return Err(Miss::Incomplete(
                        "\"it\" or \"there\" needs a path named earlier in the goal".into(),
                    ));
                }
            }
        }
        found.dedup();
        match found.len() {
            0 if borrow => Ok(ctx.sole_path.clone()),
            0 => Ok(None),
            1 => Ok(found.pop()),
            _ => Err(Miss::Incomplete(format!(
                "it names several paths ({}); name one per request, or split it with \"then\"",
                found.join(", ")
            ))),
        }
    }
}

fn shell(cmd: &str, cwd: Option<String>) -> Step {
    Step::Shell {
        cmd: Some(cmd.to_owned()),
        argv: None,
        cwd,
        env: Default::default(),
        timeout_s: None,
        artifacts: vec![],
    }
}

fn skill(name: &str, args: Map<String, Value>) -> Step {
    Step::Skill {
        name: name.to_owned(),
        args,
        artifacts: vec![],
    }
}

fn git(op: GitOp, repo: String) -> Step {
    Step::Git {
        op,
        repo,
        url: None,
        branch: None,
        message: None,
        artifacts: vec![],
    }
}

fn one_arg(name: &str, value: String) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(name.to_owned(), Value::String(value));
    m
}

/// A phrasing that needs a path: the path, or a clear "say where".
fn need_path(
    parts: &Parts,
    ctx: &Ctx,
    keywords: &[&str],
    extra: &[&str],
    what: &str,
    example: &str,
) -> Result<String, Miss> {
    parts.path(ctx, keywords, extra, true)?.ok_or_else(|| {
        Miss::Incomplete(format!(
            "{what} needs to know where: say it like \"{example}\""
        ))
    })
}

fn plan_clause(toks: &[Tok], ctx: &mut Ctx) -> Result<Vec<Step>, Miss> {
    if toks.is_empty() {
        return Err(Miss::NotUnderstood);
    }
    let steps = match_clause(toks, ctx)?;
    let path = steps.iter().rev().find_map(|s| match s {
        Step::Shell { cwd: Some(p), .. } => Some(p.clone()),
        Step::Git { repo, .. } => Some(repo.clone()),
        Step::FileRead { path, .. } => Some(path.clone()),
        Step::Skill { args, .. } => ["dir", "repo", "path"]
            .iter()
            .find_map(|k| args.get(*k).and_then(Value::as_str).map(str::to_owned)),
        _ => None,
    });
    if path.is_some() {
        ctx.last_path = path;
    }
    Ok(steps)
}

fn match_clause(toks: &[Tok], ctx: &Ctx) -> Result<Vec<Step>, Miss> {
    if let Some(steps) = skill_by_name(toks, ctx)? {
        return Ok(steps);
    }
    let p = Parts::of(toks);

    // A command in backticks, or in quotes after "run".
    const RUN: &[&str] = &["run", "execute", "exec"];
    const RUN_EXTRA: &[&str] = &[
        "command", "commands", "also", "from", "then", "and", "shell",
    ];
    let backticks = p.quoted.iter().any(|(_, b)| *b);
    if backticks || (p.has(RUN) && !p.quoted.is_empty() && p.only(RUN, RUN_EXTRA)) {
        if !p.only(RUN, RUN_EXTRA) {
            return Err(Miss::NotUnderstood);
        }
        let cwd = p.path(ctx, RUN, RUN_EXTRA, false)?;
        return Ok(p
            .quoted
            .iter()
            .map(|(cmd, _)| shell(cmd, cwd.clone()))
            .collect());
    }
    if !p.quoted.is_empty() && !p.has(&["commit"]) && !p.has(SHOW) {
        return Err(Miss::NotUnderstood);
    }

    const TESTS: &[&str] = &["test", "tests", "testsuite"];
    const TESTS_EXTRA: &[&str] = &["run", "execute", "unit", "suite", "project's", "its"];
    if p.has(TESTS) && p.only(TESTS, TESTS_EXTRA) {
        let dir = need_path(
            &p,
            ctx,
            TESTS,
            TESTS_EXTRA,
            "running the tests",
            "run the tests in ~/src/app",
        )?;
        return Ok(vec![skill("run_tests", one_arg("dir", dir))]);
    }

    const BUILD: &[&str] = &["build", "rebuild", "compile"];
    const BUILD_EXTRA: &[&str] = &["app", "code", "run"];
    if p.has(BUILD) && p.only(BUILD, BUILD_EXTRA) {
        let dir = need_path(&p, ctx, BUILD, BUILD_EXTRA, "building", "build ~/src/app")?;
        return Ok(vec![skill("build", one_arg("dir", dir))]);
    }

    const GIT_READ: &[&str] = &["status", "diff", "log", "history"];
    const GIT_EXTRA: &[&str] = &["git", "recent", "latest", "last", "commits", "run"];
    if let Some(op) = p.which(GIT_READ)
        && p.has(&["git", "repo", "repository", "commits"])
        && p.only(GIT_READ, GIT_EXTRA)
    {
        let op = match op {
            "status" => GitOp::Status,
            "diff" => GitOp::Diff,
            _ => GitOp::Log,
        };
        let example = format!("git {} in ~/src/app", op.as_str());
        let repo = need_path(
            &p,
            ctx,
            GIT_READ,
            GIT_EXTRA,
            &format!("git {}", op.as_str()),
            &example,
        )?;
        return Ok(vec![git(op, repo)]);
    }

    const PULL: &[&str] = &["pull"];
    const PULL_EXTRA: &[&str] = &[
        "git", "latest", "changes", "updates", "from", "upstream", "remote", "run", "do",
    ];
    if p.has(PULL) && p.only(PULL, PULL_EXTRA) {
        let repo = need_path(&p, ctx, PULL, PULL_EXTRA, "pulling", "pull ~/src/app")?;
        return Ok(vec![git(GitOp::Pull, repo)]);
    }

    const SYNC: &[&str] = &["sync", "resync"];
    const SYNC_EXTRA: &[&str] = &["git", "upstream", "remote", "up", "run"];
    if p.has(SYNC) && p.only(SYNC, SYNC_EXTRA) {
        let repo = need_path(&p, ctx, SYNC, SYNC_EXTRA, "syncing", "sync ~/src/app")?;
        return Ok(vec![skill("git_sync", one_arg("repo", repo))]);
    }

    const COMMIT: &[&str] = &["commit"];
    const COMMIT_EXTRA: &[&str] = &[
        "git",
        "message",
        "msg",
        "changes",
        "everything",
        "-m",
        "as",
        "saying",
        "and",
        "run",
    ];
    if p.has(COMMIT) && p.only(COMMIT, COMMIT_EXTRA) {
        let repo = need_path(
            &p,
            ctx,
            COMMIT,
            COMMIT_EXTRA,
            "a commit",
            "commit ~/src/app \"fix the typo\"",
        )?;
        let message = match p.quoted.as_slice() {
            [(m, _)] if !m.trim().is_empty() => m.clone(),
            [] => {
                return Err(Miss::Incomplete(
                    "a commit needs its message in quotes: commit ~/src/app \"fix the typo\""
                        .into(),
                ));
            }
            _ => {
                return Err(Miss::Incomplete(
                    "a commit takes one message in quotes".into(),
                ));
            }
        };
        let mut args = one_arg("repo", repo);
        args.insert("message".into(), Value::String(message));
        return Ok(vec![skill("git_commit", args)]);
    }

    const DISK: &[&str] = &["disk", "disks", "df", "storage", "diskspace"];
    const DISK_EXTRA: &[&str] = &[
        "usage",
        "use",
        "used",
        "space",
        "free",
        "full",
        "left",
        "how",
        "much",
        "available",
        "report",
        "drive",
        "drives",
        "filesystem",
        "filesystems",
        "size",
        "there",
        "it",
        "and",
        "memory",
    ];
    const MEMORY: &[&str] = &["memory", "ram", "mem"];
    const MEMORY_EXTRA: &[&str] = &[
        "usage",
        "use",
        "used",
        "free",
        "how",
        "much",
        "available",
        "left",
        "there",
        "and",
        "disk",
        "report",
    ];
    let disk = p.has(DISK) && p.only(DISK, DISK_EXTRA);
    let memory = p.has(MEMORY) && p.only(MEMORY, MEMORY_EXTRA);
    if disk || memory {
        let mut steps = Vec::new();
        if p.has(DISK) {
            let args = match p.path(ctx, DISK, DISK_EXTRA, false)? {
                Some(path) => one_arg("path", path),
                None => Map::new(),
            };
            steps.push(skill("disk_usage", args));
        }
        if p.has(MEMORY) {
            steps.push(shell(MEMORY_CMD, None));
        }
        return Ok(steps);
    }

    const LIST: &[&str] = &["list", "ls"];
    const LIST_EXTRA: &[&str] = &[
        "files",
        "contents",
        "content",
        "everything",
        "there",
        "whats",
        "what's",
    ];
    let what_is_in = p.has(&["what", "whats", "what's"]) && p.has(&["in", "inside"]);
    if (p.has(LIST) || what_is_in) && p.only(LIST, LIST_EXTRA) {
        let dir = need_path(&p, ctx, LIST, LIST_EXTRA, "listing", "list ~/src")?;
        return Ok(vec![shell("ls -la", Some(dir))]);
    }

    const SYSTEM: &[&str] = &["system", "uname"];
    const SYSTEM_EXTRA: &[&str] = &[
        "info",
        "information",
        "details",
        "summary",
        "overview",
        "about",
        "machine",
        "computer",
        "host",
    ];
    if (p.has(&["uname"])
        || (p.has(&["system"])
            && p.has(&["info", "information", "details", "summary", "overview"])))
        && p.only(SYSTEM, SYSTEM_EXTRA)
    {
        return Ok(vec![skill("system_info", Map::new())]);
    }

    const SHOW_EXTRA: &[&str] = &["file", "contents", "content"];
    if p.has(SHOW) && p.only(SHOW, SHOW_EXTRA) {
        let mut found = p.path(ctx, SHOW, SHOW_EXTRA, false)?;
        if found.is_none()
            && let [(quoted, false)] = p.quoted.as_slice()
        {
            found = Some(quoted.clone());
        }
        return match found {
            Some(path) => Ok(vec![Step::FileRead {
                path,
                artifacts: vec![],
            }]),
            None => Err(Miss::Incomplete(
                "showing a file needs its path: show ~/notes.txt".into(),
            )),
        };
    }
    Err(Miss::NotUnderstood)
}

const SHOW: &[&str] = &["show", "cat", "read", "print", "display", "view", "open"];

/// `<skill> [value ...] [key=value ...]`: a skill by its name. Positional values fill the
/// arguments in their declared order; `in`, `for`, `of`, `at` and `with` are skipped.
fn skill_by_name(toks: &[Tok], ctx: &Ctx) -> Result<Option<Vec<Step>>, Miss> {
    let Some(Tok::Word(first)) = toks.first() else {
        return Ok(None);
    };
    let Some(skill) = ctx.skills.get(first) else {
        return Ok(None);
    };
    let rest = &toks[1..];
    // `build` is both a skill and a verb: "build the app in ~/x" is the build phrasing.
    let strict = rest.iter().all(|t| match t {
        Tok::Word(w) => is_path(w) || w.contains('='),
        Tok::Quoted { .. } => true,
        Tok::Sep => false,
    });
    if !first.contains('_') && !strict {
        return Ok(None);
    }
    let mut args = Map::new();
    let mut positional = skill.args.iter();
    let bad = |problem: String| Miss::Incomplete(format!("skill {}: {problem}", skill.name));
    for t in rest {
        let (key, value) = match t {
            Tok::Word(w) if ["in", "for", "of", "at", "with"].contains(&lower(w).as_str()) => {
                continue;
            }
            Tok::Word(w) if !is_path(w) && w.contains('=') => {
                let (k, v) = w.split_once('=').unwrap_or((w.as_str(), ""));
                (Some(k.to_owned()), v.to_owned())
            }
            Tok::Word(w) => (None, w.clone()),
            Tok::Quoted { text, .. } => (None, text.clone()),
            Tok::Sep => continue,
        };
        let arg = match key {
            Some(k) => skill.args.iter().find(|a| a.name == k).ok_or_else(|| {
                bad(format!(
                    "unknown argument `{k}` (it takes: {})",
                    skill
                        .args
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?,
            None => loop {
                match positional.next() {
                    Some(a) if args.contains_key(&a.name) => continue,
                    Some(a) => break a,
                    None => {
                        return Err(bad(format!("too many values ({value:?} is one too many)")));
                    }
                }
            },
        };
        let v = match arg.kind {
            ArgType::String | ArgType::Path => Value::String(value),
            ArgType::Integer => value.parse::<i64>().map(Value::from).map_err(|_| {
                bad(format!(
                    "`{}` must be a whole number, not {value:?}",
                    arg.name
                ))
            })?,
            ArgType::Boolean => match lower(&value).as_str() {
                "true" | "yes" | "on" => Value::Bool(true),
                "false" | "no" | "off" => Value::Bool(false),
                _ => {
                    return Err(bad(format!(
                        "`{}` must be true or false, not {value:?}",
                        arg.name
                    )));
                }
            },
            ArgType::Strings | ArgType::Paths => Value::Array(
                value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            ),
        };
        args.insert(arg.name.clone(), v);
    }
    // Check the arguments here, so a mistake is reported in the words of the goal.
    skill
        .expand(&args)
        .map_err(|e| Miss::Incomplete(e.to_string()))?;
    Ok(Some(vec![Step::Skill {
        name: skill.name.clone(),
        args,
        artifacts: vec![],
    }]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req() -> JobRequest {
        JobRequest::from_slice(br#"{"goal":"x"}"#).unwrap()
    }

    fn planned(goal: &str) -> Result<Value, String> {
        let skills = Skills::builtin().unwrap();
        plan(goal, &req(), &skills).map(|s| serde_json::to_value(s).unwrap())
    }

    /// Every documented phrasing, with the steps it must become (before skills expand).
    #[test]
    fn documented_phrasings_plan_the_documented_steps() {
        let mem = json!({"action": "shell", "cmd": MEMORY_CMD});
        let table: Vec<(&str, Value)> = vec![
            (
                "run `cargo test`",
                json!([{"action": "shell", "cmd": "cargo test"}]),
            ),
            (
                "run `make check` in ~/src/app",
                json!([{"action": "shell", "cmd": "make check", "cwd": "~/src/app"}]),
            ),
            ("`ls -la`", json!([{"action": "shell", "cmd": "ls -la"}])),
            (
                "run \"echo 'hi there'\"",
                json!([{"action": "shell", "cmd": "echo 'hi there'"}]),
            ),
            (
                "execute 'uptime'.",
                json!([{"action": "shell", "cmd": "uptime"}]),
            ),
            (
                "run `cargo build` then `cargo test` in ~/src/app",
                json!([
                {"action": "shell", "cmd": "cargo build", "cwd": "~/src/app"},
                {"action": "shell", "cmd": "cargo test", "cwd": "~/src/app"}]),
            ),
            (
                "run the tests in ~/src/app",
                json!([{"action": "skill", "name": "run_tests", "args": {"dir": "~/src/app"}}]),
            ),
            (
                "Please run the unit tests of ./app",
                json!([{"action": "skill", "name": "run_tests", "args": {"dir": "./app"}}]),
            ),
            (
                "test ~/src/app",
                json!([{"action": "skill", "name": "run_tests", "args": {"dir": "~/src/app"}}]),
            ),
            (
                "run the tests in app",
                json!([{"action": "skill", "name": "run_tests", "args": {"dir": "app"}}]),
            ),
            (
                "build ~/src/blog",
                json!([{"action": "skill", "name": "build", "args": {"dir": "~/src/blog"}}]),
            ),
            (
                "build the project in ~/src/blog",
                json!([{"action": "skill", "name": "build", "args": {"dir": "~/src/blog"}}]),
            ),
            (
                "rebuild ~/src/blog",
                json!([{"action": "skill", "name": "build", "args": {"dir": "~/src/blog"}}]),
            ),
            (
                "git status in ~/src/app",
                json!([{"action": "git", "op": "status", "repo": "~/src/app"}]),
            ),
            (
                "show the git log of ~/src/app",
                json!([{"action": "git", "op": "log", "repo": "~/src/app"}]),
            ),
            (
                "git diff ~/src/app",
                json!([{"action": "git", "op": "diff", "repo": "~/src/app"}]),
            ),
            (
                "status of the repo ~/src/app",
                json!([{"action": "git", "op": "status", "repo": "~/src/app"}]),
            ),
            (
                "pull ~/src/blog",
                json!([{"action": "git", "op": "pull", "repo": "~/src/blog"}]),
            ),
            (
                "git pull in ~/src/blog",
                json!([{"action": "git", "op": "pull", "repo": "~/src/blog"}]),
            ),
            (
                "sync ~/src/blog",
                json!([{"action": "skill", "name": "git_sync", "args": {"repo": "~/src/blog"}}]),
            ),
            (
                "commit ~/src/app \"fix the typo\"",
                json!([{"action": "skill", "name": "git_commit", "args": {"repo": "~/src/app", "message": "fix the typo"}}]),
            ),
            (
                "commit everything in ~/src/app with message 'release 1.2'",
                json!([{"action": "skill", "name": "git_commit", "args": {"repo": "~/src/app", "message": "release 1.2"}}]),
            ),
            (
                "show ~/notes.txt",
                json!([{"action": "file_read", "path": "~/notes.txt"}]),
            ),
            (
                "cat /etc/hostname",
                json!([{"action": "file_read", "path": "/etc/hostname"}]),
            ),
            (
                "show me the file \"~/My Notes.txt\"",
                json!([{"action": "file_read", "path": "~/My Notes.txt"}]),
            ),
            (
                "disk usage",
                json!([{"action": "skill", "name": "disk_usage", "args": {}}]),
            ),
            (
                "how full is the disk?",
                json!([{"action": "skill", "name": "disk_usage", "args": {}}]),
            ),
            (
                "disk usage of ~/src",
                json!([{"action": "skill", "name": "disk_usage", "args": {"path": "~/src"}}]),
            ),
            ("memory usage", json!([mem])),
            ("how much memory is free", json!([mem])),
            (
                "disk and memory usage",
                json!([{"action": "skill", "name": "disk_usage", "args": {}}, mem]),
            ),
            (
                "list ~/src",
                json!([{"action": "shell", "cmd": "ls -la", "cwd": "~/src"}]),
            ),
            (
                "ls ~/src",
                json!([{"action": "shell", "cmd": "ls -la", "cwd": "~/src"}]),
            ),
            (
                "what's in ~/Downloads",
                json!([{"action": "shell", "cmd": "ls -la", "cwd": "~/Downloads"}]),
            ),
            (
                "list the files in ~/src",
                json!([{"action": "shell", "cmd": "ls -la", "cwd": "~/src"}]),
            ),
            (
                "system info",
                json!([{"action": "skill", "name": "system_info", "args": {}}]),
            ),
            (
                "run_tests ~/src/app",
                json!([{"action": "skill", "name": "run_tests", "args": {"dir": "~/src/app"}}]),
            ),
            (
                "run_tests dir=~/src/app",
                json!([{"action": "skill", "name": "run_tests", "args": {"dir": "~/src/app"}}]),
            ),
            (
                "git_commit repo=~/src/app message=\"fix: typo\" paths=a.txt,b.txt",
                json!([{"action": "skill", "name": "git_commit", "args": {"repo": "~/src/app", "message": "fix: typo", "paths": ["a.txt", "b.txt"]}}]),
            ),
            (
                "git_commit ~/src/app \"fix it\"",
                json!([{"action": "skill", "name": "git_commit", "args": {"repo": "~/src/app", "message": "fix it"}}]),
            ),
            (
                "git_sync ~/src/blog",
                json!([{"action": "skill", "name": "git_sync", "args": {"repo": "~/src/blog"}}]),
            ),
            (
                "disk_usage",
                json!([{"action": "skill", "name": "disk_usage", "args": {}}]),
            ),
            (
                "disk_usage path=~/src",
                json!([{"action": "skill", "name": "disk_usage", "args": {"path": "~/src"}}]),
            ),
            (
                "system_info",
                json!([{"action": "skill", "name": "system_info", "args": {}}]),
            ),
            ("build_ ~/x", Value::Null),
            (
                "pull ~/src/blog and then build it",
                json!([
                {"action": "git", "op": "pull", "repo": "~/src/blog"},
                {"action": "skill", "name": "build", "args": {"dir": "~/src/blog"}}]),
            ),
            (
                "pull and rebuild ~/src/blog",
                json!([
                {"action": "git", "op": "pull", "repo": "~/src/blog"},
                {"action": "skill", "name": "build", "args": {"dir": "~/src/blog"}}]),
            ),
            (
                "list the files in hello, then disk usage of hello",
                json!([
                    {"action": "shell", "cmd": "ls -la", "cwd": "hello"},
                    {"action": "skill", "name": "disk_usage", "args": {"path": "hello"}}
                ]),
            ),
            (
                "git status in ~/a; run the tests in ~/b",
                json!([
                {"action": "git", "op": "status", "repo": "~/a"},
                {"action": "skill", "name": "run_tests", "args": {"dir": "~/b"}}]),
            ),
        ];
        for (goal, expected) in table {
            if expected.is_null() {
                assert!(planned(goal).is_err(), "{goal}");
                continue;
            }
            assert_eq!(
                planned(goal).unwrap_or_else(|e| panic!("{goal}: {e}")),
                expected,
                "{goal}"
            );
        }
    }

    #[test]
    fn unplannable_goals_get_a_reason_and_a_way_forward() {
        for (goal, wanted) in [
            ("make me a sandwich", "does not understand"),
            ("rm -rf everything", "does not understand"),
            ("run cargo test", "Put commands in backticks"),
            ("build the blog", "SKYNET_PLANNER=anthropic"),
            ("run the tests", "run the tests in ~/src/app"),
            ("commit ~/src/app", "message in quotes"),
            ("git status", "git status in ~/src/app"),
            ("pull ~/a ~/b", "several paths"),
            ("run `ls", "never closed"),
            ("how full is the disk on the desktop", "--worker desktop"),
            ("run_tests", "argument `dir` is required"),
            (
                "git_commit repo=~/x message=m colour=red",
                "unknown argument `colour`",
            ),
            ("run_tests dir=-rf", "must not start with '-'"),
            ("list ~/src and make coffee", "stuck at \"make coffee\""),
        ] {
            let e = planned(goal).unwrap_err();
            assert!(e.contains(wanted), "{goal}: {wanted:?} not in {e}");
        }
    }

    #[test]
    fn a_machine_named_in_the_goal_must_agree_with_the_request() {
        let skills = Skills::builtin().unwrap();
        let req = JobRequest::from_slice(br#"{"goal":"x","worker":"desktop"}"#).unwrap();
        let steps = plan("how full is the disk on the desktop", &req, &skills).unwrap();
        assert!(matches!(&steps[..], [Step::Skill { name, .. }] if name == "disk_usage"));
        let req = JobRequest::from_slice(br#"{"goal":"x","labels":["gpu"]}"#).unwrap();
        assert!(plan("memory usage on gpu", &req, &skills).is_ok());
    }
}
