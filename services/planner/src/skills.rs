//! Skills: named, high-level capabilities (`run_tests`, `git_commit`, ...) defined in TOML as
//! typed arguments plus a template of low-level steps. The planner expands every skill step,
//! from a request or from an LLM's plan, so workers only ever see low-level actions.
//!
//! `skills.toml` next to this crate holds the built-in skills and documents the format; a
//! skills file given with `--skills` adds to them (and replaces a built-in of the same name).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};
use skynet_protocol::Step;
use skynet_protocol::job::{limits, shell_quote_argv};

/// The built-in skills, as shipped.
pub const BUILTIN_SKILLS: &str = include_str!("../skills.toml");

/// The type of a skill argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgType {
    String,
    /// A file or directory on the worker; never starts with '-'.
    Path,
    Integer,
    Boolean,
    /// A list of strings.
    Strings,
    /// A list of paths.
    Paths,
}

impl ArgType {
    pub fn as_str(self) -> &'static str {
        match self {
            ArgType::String => "string",
            ArgType::Path => "path",
            ArgType::Integer => "integer",
            ArgType::Boolean => "boolean",
            ArgType::Strings => "strings",
            ArgType::Paths => "paths",
        }
    }

    fn is_list(self) -> bool {
        matches!(self, ArgType::Strings | ArgType::Paths)
    }

    /// The JSON Schema of a value of this type, for the LLM planners.
    pub fn schema(self) -> Value {
        match self {
            ArgType::String | ArgType::Path => serde_json::json!({"type": "string"}),
            ArgType::Integer => serde_json::json!({"type": "integer"}),
            ArgType::Boolean => serde_json::json!({"type": "boolean"}),
            ArgType::Strings | ArgType::Paths => {
                serde_json::json!({"type": "array", "items": {"type": "string"}})
            }
        }
    }
}

/// One argument of a skill.
#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    pub name: String,
    pub kind: ArgType,
    pub required: bool,
    pub default: Option<Value>,
    pub description: String,
}

/// A step of a skill's template.
#[derive(Debug, Clone, PartialEq)]
struct Template {
    when: Option<String>,
    unless: Option<String>,
    /// The step as JSON, with `{{arg}}` placeholders in its strings.
    body: Value,
}

/// A skill: typed arguments and the steps it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Skill {
    pub name: String,
    pub description: String,
    pub args: Vec<Arg>,
    steps: Vec<Template>,
}

/// The skills the planner knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Skills {
    skills: Vec<Skill>,
}

/// A skills file that cannot be used; the message names the skill and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read it: {0}")]
    Read(String),
    #[error("not a valid skills file: {0}")]
    Toml(String),
    #[error("skill {skill:?}: {problem}")]
    Skill { skill: String, problem: String },
}

/// Why a skill step could not be expanded. The message is meant for the person (or the
/// model) who wrote the step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkillError {
    #[error("there is no skill {name:?} (known skills: {known})")]
    Unknown { name: String, known: String },
    #[error("skill {skill}: unknown argument `{arg}` (it takes: {takes})")]
    UnknownArg {
        skill: String,
        arg: String,
        takes: String,
    },
    #[error("skill {skill}: argument `{arg}` is required ({description})")]
    Missing {
        skill: String,
        arg: String,
        description: String,
    },
    #[error("skill {skill}: argument `{arg}` {problem}")]
    BadArg {
        skill: String,
        arg: String,
        problem: String,
    },
    /// The template did not produce a valid step (a bug in the skills file).
    #[error("skill {skill}: its template made an invalid step: {problem}")]
    Template { skill: String, problem: String },
}

/// A skill error located in a list of steps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`steps[{index}]`: {error}")]
pub struct ExpandError {
    pub index: usize,
    pub error: SkillError,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default, rename = "skill")]
    skills: Vec<SkillSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SkillSpec {
    name: String,
    description: String,
    #[serde(default, rename = "arg")]
    args: Vec<ArgSpec>,
    #[serde(default, rename = "step")]
    steps: Vec<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArgSpec {
    name: String,
    #[serde(rename = "type")]
    kind: ArgType,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    default: Option<toml::Value>,
    description: String,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= limits::SKILL_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Skills {
    /// The built-in skills.
    pub fn builtin() -> Result<Self, LoadError> {
        Self::from_toml(BUILTIN_SKILLS)
    }

    /// The built-in skills plus (or replaced by) those of `path`.
    pub fn with_file(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|e| LoadError::Read(e.to_string()))?;
        let mut skills = Self::builtin()?;
        skills.extend(Self::from_toml(&text)?);
        Ok(skills)
    }

    /// Parses a skills file and checks every template by expanding it with sample values.
    pub fn from_toml(text: &str) -> Result<Self, LoadError> {
        let spec: FileSpec = toml::from_str(text).map_err(|e| LoadError::Toml(e.to_string()))?;
        let mut skills: Vec<Skill> = Vec::new();
        for s in spec.skills {
            let skill = Skill::from_spec(s)?;
            if skills.iter().any(|k| k.name == skill.name) {
                return Err(LoadError::Skill {
                    skill: skill.name,
                    problem: "defined twice in the same file".into(),
                });
            }
            skills.push(skill);
        }
        Ok(Self { skills })
    }

    /// Adds `other`'s skills; one with a known name replaces the one there was.
    pub fn extend(&mut self, other: Skills) {
        for skill in other.skills {
            match self.skills.iter_mut().find(|s| s.name == skill.name) {
                Some(slot) => *slot = skill,
                None => self.skills.push(skill),
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&Skill> {
        self.skills.iter().find(|s| s.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Skill> {
        self.skills.iter()
    }

    pub fn names(&self) -> Vec<&str> {
        self.skills.iter().map(|s| s.name.as_str()).collect()
    }

    /// Expands every skill step of `steps`; other steps are kept as they are. The result
    /// holds only low-level actions.
    pub fn expand(&self, steps: &[Step]) -> Result<Vec<Step>, ExpandError> {
        let mut out = Vec::with_capacity(steps.len());
        for (index, step) in steps.iter().enumerate() {
            match step {
                Step::Skill {
                    name,
                    args,
                    artifacts,
                } => {
                    let skill = self.get(name).ok_or_else(|| ExpandError {
                        index,
                        error: SkillError::Unknown {
                            name: name.clone(),
                            known: self.names().join(", "),
                        },
                    })?;
                    let mut expanded = skill
                        .expand(args)
                        .map_err(|error| ExpandError { index, error })?;
                    // The skill's artifacts are collected once it has done its work.
                    if let Some(last) = expanded.last_mut() {
                        add_artifacts(last, artifacts);
                    }
                    out.extend(expanded);
                }
                other => out.push(other.clone()),
            }
        }
        Ok(out)
    }

    /// The catalogue in a few lines: `name(arg: type, ...) - description`.
    pub fn catalogue(&self) -> String {
        let mut s = String::new();
        for skill in &self.skills {
            let _ = writeln!(s, "- {}", skill.signature());
        }
        s
    }
}

fn add_artifacts(step: &mut Step, extra: &[String]) {
    if extra.is_empty() {
        return;
    }
    let slot = match step {
        Step::Shell { artifacts, .. }
        | Step::Python { artifacts, .. }
        | Step::FileRead { artifacts, .. }
        | Step::FileWrite { artifacts, .. }
        | Step::Git { artifacts, .. }
        | Step::Skill { artifacts, .. } => artifacts,
    };
    for a in extra {
        if !slot.contains(a) {
            slot.push(a.clone());
        }
    }
}

/// The arguments of one expansion, checked against the skill's types. An optional argument
/// that was not given (and has no default) is absent.
type Bound = BTreeMap<String, (ArgType, Value)>;

impl Skill {
    fn from_spec(spec: SkillSpec) -> Result<Self, LoadError> {
        let bad = |problem: String| LoadError::Skill {
            skill: spec.name.clone(),
            problem,
        };
        if !valid_name(&spec.name) {
            return Err(bad(
                "a skill name is 1-64 characters of a-z, 0-9 and '_'".into()
            ));
        }
        if spec.description.trim().is_empty() {
            return Err(bad("needs a description".into()));
        }
        let mut args: Vec<Arg> = Vec::new();
        for a in &spec.args {
            if !valid_name(&a.name) {
                return Err(bad(format!(
                    "argument {:?}: a name is 1-64 characters of a-z, 0-9 and '_'",
                    a.name
                )));
            }
            if args.iter().any(|b| b.name == a.name) {
                return Err(bad(format!("argument {:?} is declared twice", a.name)));
            }
            let default = match &a.default {
                None => None,
                Some(_) if a.required => {
                    return Err(bad(format!(
                        "argument {:?} is required, so it cannot have a default",
                        a.name
                    )));
                }
                Some(v) => {
                    let v = serde_json::to_value(v).map_err(|e| bad(e.to_string()))?;
                    check_value(a.kind, &v)
                        .map_err(|p| bad(format!("argument {:?}: the default {p}", a.name)))?;
                    Some(v)
                }
            };
            args.push(Arg {
                name: a.name.clone(),
                kind: a.kind,
                required: a.required,
                default,
                description: a.description.clone(),
            });
        }
        if spec.steps.is_empty() {
            return Err(bad("needs at least one [[skill.step]]".into()));
        }
        let mut steps = Vec::new();
        for (i, table) in spec.steps.iter().enumerate() {
            let mut table = table.clone();
            let mut condition = |key: &str| -> Result<Option<String>, LoadError> {
                match table.remove(key) {
                    None => Ok(None),
                    Some(toml::Value::String(name)) => {
                        if args.iter().any(|a| a.name == name) {
                            Ok(Some(name))
                        } else {
                            Err(bad(format!(
                                "step {}: `{key}` names {name:?}, which is not an argument",
                                i + 1
                            )))
                        }
                    }
                    Some(_) => Err(bad(format!(
                        "step {}: `{key}` must be an argument's name",
                        i + 1
                    ))),
                }
            };
            let when = condition("when")?;
            let unless = condition("unless")?;
            let body = serde_json::to_value(&table).map_err(|e| bad(e.to_string()))?;
            if body.get("action").and_then(Value::as_str) == Some("skill") {
                return Err(bad(format!(
                    "step {}: a skill expands into low-level actions, not other skills",
                    i + 1
                )));
            }
            steps.push(Template { when, unless, body });
        }
        let skill = Skill {
            name: spec.name.clone(),
            description: spec.description.trim().to_owned(),
            args,
            steps,
        };
        skill.check_templates().map_err(bad)?;
        Ok(skill)
    }

    /// Checks that every placeholder names an argument that has a value wherever it is used,
    /// and that the templates make valid steps, by expanding them with sample values: once
    /// with every optional argument given and once with none.
    fn check_templates(&self) -> Result<(), String> {
        for t in &self.steps {
            let mut names = Vec::new();
            placeholders(&t.body, &mut names);
            for name in names {
                let Some(arg) = self.args.iter().find(|a| a.name == name) else {
                    return Err(format!("the placeholder {{{{{name}}}}} is not an argument"));
                };
                let always = arg.required || arg.default.is_some();
                if !always && t.when.as_deref() != Some(name.as_str()) {
                    return Err(format!(
                        "{{{{{name}}}}} is optional without a default: use it only in steps \
                         with `when = \"{name}\"`, or give it a default"
                    ));
                }
            }
        }
        for all_optional in [true, false] {
            let mut args = Map::new();
            for a in &self.args {
                if a.required || all_optional {
                    args.insert(a.name.clone(), sample(a.kind));
                }
            }
            let steps = self.expand(&args).map_err(|e| e.to_string())?;
            if steps.is_empty() {
                return Err("with these arguments it expands to no step at all".into());
            }
        }
        Ok(())
    }

    /// `name(arg: type, arg?: type = default) - description`.
    pub fn signature(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| {
                let mut s = format!(
                    "{}{}: {}",
                    a.name,
                    if a.required { "" } else { "?" },
                    a.kind.as_str()
                );
                if let Some(d) = &a.default {
                    let _ = write!(s, " = {d}");
                }
                let _ = write!(s, " ({})", a.description);
                s
            })
            .collect();
        format!("{}({}) - {}", self.name, args.join(", "), self.description)
    }

    /// The JSON Schema of this skill's `args`.
    pub fn args_schema(&self) -> Value {
        let mut props = Map::new();
        for a in &self.args {
            let mut s = a.kind.schema();
            if let Some(obj) = s.as_object_mut() {
                obj.insert("description".into(), Value::String(a.description.clone()));
            }
            props.insert(a.name.clone(), s);
        }
        let required: Vec<&str> = self
            .args
            .iter()
            .filter(|a| a.required)
            .map(|a| a.name.as_str())
            .collect();
        serde_json::json!({
            "type": "object",
            "properties": props,
            "required": required,
            "additionalProperties": false,
        })
    }

    /// Checks `args` against the declared arguments and fills in defaults.
    fn bind(&self, args: &Map<String, Value>) -> Result<Bound, SkillError> {
        for key in args.keys() {
            if !self.args.iter().any(|a| &a.name == key) {
                let takes = if self.args.is_empty() {
                    "no arguments".to_owned()
                } else {
                    self.args
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(SkillError::UnknownArg {
                    skill: self.name.clone(),
                    arg: key.clone(),
                    takes,
                });
            }
        }
        let mut bound = Bound::new();
        for a in &self.args {
            // An explicit null is how JSON writers (and models) say "not given".
            let given = args.get(&a.name).filter(|v| !v.is_null());
            let value = match (given, &a.default) {
                (Some(v), _) => {
                    check_value(a.kind, v).map_err(|problem| SkillError::BadArg {
                        skill: self.name.clone(),
                        arg: a.name.clone(),
                        problem,
                    })?;
                    v.clone()
                }
                (None, Some(d)) => d.clone(),
                (None, None) if a.required => {
                    return Err(SkillError::Missing {
                        skill: self.name.clone(),
                        arg: a.name.clone(),
                        description: a.description.clone(),
                    });
                }
                (None, None) => continue,
            };
            bound.insert(a.name.clone(), (a.kind, value));
        }
        Ok(bound)
    }

    /// Expands this skill with `args` into low-level steps.
    pub fn expand(&self, args: &Map<String, Value>) -> Result<Vec<Step>, SkillError> {
        let bound = self.bind(args)?;
        let template_error = |problem: String| SkillError::Template {
            skill: self.name.clone(),
            problem,
        };
        let mut out = Vec::new();
        for t in &self.steps {
            if let Some(w) = &t.when
                && !is_set(&bound, w)
            {
                continue;
            }
            if let Some(u) = &t.unless
                && is_set(&bound, u)
            {
                continue;
            }
            let body = render(&t.body, Context::Raw, &bound).map_err(template_error)?;
            let step: Step = serde_json::from_value(body)
                .map_err(|e| template_error(format!("not a step: {e}")))?;
            if matches!(step, Step::Skill { .. }) {
                return Err(template_error("a template step may not be a skill".into()));
            }
            step.validate("step")
                .map_err(|e| template_error(e.to_string()))?;
            out.push(step);
        }
        Ok(out)
    }
}

fn is_set(bound: &Bound, name: &str) -> bool {
    match bound.get(name) {
        None => false,
        Some((_, Value::Bool(b))) => *b,
        Some(_) => true,
    }
}

fn sample(kind: ArgType) -> Value {
    match kind {
        ArgType::String => Value::String("sample".into()),
        ArgType::Path => Value::String("~/sample".into()),
        ArgType::Integer => Value::from(1),
        ArgType::Boolean => Value::Bool(true),
        ArgType::Strings | ArgType::Paths => serde_json::json!(["sample"]),
    }
}

const MAX_LIST: usize = 256;

/// Checks one value against its type; the problem reads after "argument `x` ".
fn check_value(kind: ArgType, v: &Value) -> Result<(), String> {
    let text = |s: &str, path: bool| -> Result<(), String> {
        if s.contains('\0') {
            return Err("contains a NUL byte".into());
        }
        if path {
            if s.trim().is_empty() {
                return Err("must not be empty".into());
            }
            if s.len() > limits::PATH_BYTES {
                return Err(format!("is longer than {} bytes", limits::PATH_BYTES));
            }
            if s.starts_with('-') {
                return Err("must not start with '-' (it would read as an option)".into());
            }
            if s.chars().any(char::is_control) {
                return Err("contains control characters".into());
            }
        } else if s.len() > limits::CMD_BYTES {
            return Err(format!("is longer than {} bytes", limits::CMD_BYTES));
        }
        Ok(())
    };
    let wanted = match kind {
        ArgType::String => "a string",
        ArgType::Path => "a path (a string)",
        ArgType::Integer => "a whole number",
        ArgType::Boolean => "true or false",
        ArgType::Strings => "a list of strings",
        ArgType::Paths => "a list of paths",
    };
    let wrong = || format!("must be {wanted}, not {}", clip(&v.to_string(), 60));
    match (kind, v) {
        (ArgType::String, Value::String(s)) => text(s, false),
        (ArgType::Path, Value::String(s)) => text(s, true),
        (ArgType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(()),
        (ArgType::Boolean, Value::Bool(_)) => Ok(()),
        (ArgType::Strings | ArgType::Paths, Value::Array(items)) => {
            if items.is_empty() {
                return Err("must not be an empty list (leave it out instead)".into());
            }
            if items.len() > MAX_LIST {
                return Err(format!("has more than {MAX_LIST} items"));
            }
            for (i, item) in items.iter().enumerate() {
                let Value::String(s) = item else {
                    return Err(format!("item {i}: {}", wrong()));
                };
                text(s, kind == ArgType::Paths).map_err(|p| format!("item {i} {p}"))?;
            }
            Ok(())
        }
        _ => Err(wrong()),
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

/// How a placeholder is written where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    /// A shell command line: quoted for `/bin/sh`.
    Shell,
    /// Python source: a literal.
    Python,
    /// A string nothing parses further (paths, messages, argv items): as it is.
    Raw,
}

/// Every placeholder name in the strings of `v`.
fn placeholders(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find("{{") {
                let after = &rest[start + 2..];
                match after.find("}}") {
                    Some(end) => {
                        out.push(after[..end].trim().to_owned());
                        rest = &after[end + 2..];
                    }
                    None => break,
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| placeholders(i, out)),
        Value::Object(map) => map.values().for_each(|i| placeholders(i, out)),
        _ => {}
    }
}

/// The name of a string that is exactly one placeholder.
fn sole_placeholder(s: &str) -> Option<&str> {
    let inner = s.strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then(|| inner.trim())
}

fn render(v: &Value, ctx: Context, bound: &Bound) -> Result<Value, String> {
    match v {
        Value::String(s) => {
            if ctx == Context::Raw
                && let Some(name) = sole_placeholder(s)
                && let Some((kind, value)) = bound.get(name)
                && matches!(kind, ArgType::Integer | ArgType::Boolean)
            {
                return Ok(value.clone());
            }
            render_str(s, ctx, bound).map(Value::String)
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                // A list argument standing alone as an item spreads into one item per element.
                if let Value::String(s) = item
                    && let Some(name) = sole_placeholder(s)
                    && let Some((kind, Value::Array(values))) = bound.get(name)
                    && kind.is_list()
                {
                    out.extend(values.iter().cloned());
                    continue;
                }
                out.push(render(item, ctx, bound)?);
            }
            Ok(Value::Array(out))
        }
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, item) in map {
                let inner = match k.as_str() {
                    "cmd" => Context::Shell,
                    "code" => Context::Python,
                    _ => ctx,
                };
                out.insert(k.clone(), render(item, inner, bound)?);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

fn render_str(s: &str, ctx: Context, bound: &Bound) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(format!("an unclosed placeholder in {:?}", clip(s, 60)));
        };
        let name = after[..end].trim();
        let Some((kind, value)) = bound.get(name) else {
            return Err(format!("{{{{{name}}}}} has no value here"));
        };
        out.push_str(&write_value(*kind, value, ctx)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn write_value(kind: ArgType, value: &Value, ctx: Context) -> Result<String, String> {
    let items: Vec<&str> = match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        Value::Number(n) => return Ok(n.to_string()),
        Value::Bool(b) => {
            return Ok(match (ctx, b) {
                (Context::Python, true) => "True".into(),
                (Context::Python, false) => "False".into(),
                (_, b) => b.to_string(),
            });
        }
        _ => return Err("an argument without a usable value".into()),
    };
    let path = matches!(kind, ArgType::Path | ArgType::Paths);
    Ok(match ctx {
        Context::Shell => items
            .iter()
            .map(|s| if path { quote_path(s) } else { quote(s) })
            .collect::<Vec<_>>()
            .join(" "),
        Context::Python => {
            let literal = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "''".into());
            if kind.is_list() {
                format!(
                    "[{}]",
                    items
                        .iter()
                        .map(|s| literal(s))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                literal(items.first().copied().unwrap_or(""))
            }
        }
        Context::Raw => {
            if kind.is_list() {
                return Err(
                    "a list can only stand alone as an `argv` item, or in `cmd` or `code`".into(),
                );
            }
            items.first().copied().unwrap_or("").to_owned()
        }
    })
}

/// Quotes a word for `/bin/sh` so that it stays one word and nothing in it is interpreted.
pub fn quote(s: &str) -> String {
    shell_quote_argv(&[s.to_owned()])
}

/// Like [`quote`], but a leading `~` or `~/` stays outside the quotes so the shell still
/// expands it to the home directory.
pub fn quote_path(s: &str) -> String {
    if s == "~" {
        "~".into()
    } else if let Some(rest) = s.strip_prefix("~/") {
        if rest.is_empty() {
            "~/".into()
        } else {
            format!("~/{}", quote(rest))
        }
    } else {
        quote(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn builtin() -> Skills {
        Skills::builtin().expect("the built-in skills load")
    }

    #[test]
    fn the_builtin_skills_are_the_documented_ones() {
        assert_eq!(
            builtin().names(),
            [
                "run_tests",
                "build",
                "git_sync",
                "git_commit",
                "disk_usage",
                "system_info"
            ]
        );
    }

    #[test]
    fn run_tests_detects_the_project_kind_on_the_worker() {
        let steps = builtin()
            .get("run_tests")
            .unwrap()
            .expand(&args(json!({"dir": "~/src/app"})))
            .unwrap();
        let [
            Step::Shell {
                cmd: Some(cmd),
                cwd,
                ..
            },
        ] = steps.as_slice()
        else {
            panic!("{steps:?}")
        };
        assert_eq!(cwd.as_deref(), Some("~/src/app"));
        for marker in ["Cargo.toml", "package.json", "pytest", "go.mod", "Makefile"] {
            assert!(cmd.contains(marker), "{marker} not checked: {cmd}");
        }
    }

    #[test]
    fn git_commit_adds_the_given_paths_or_everything() {
        let skill = builtin();
        let skill = skill.get("git_commit").unwrap();
        let with = skill
            .expand(&args(
                json!({"repo": "~/r", "message": "fix: it's done", "paths": ["a b.txt", "c"]}),
            ))
            .unwrap();
        assert_eq!(
            serde_json::to_value(&with).unwrap(),
            json!([
                {"action": "shell", "cwd": "~/r", "argv": ["git", "add", "--", "a b.txt", "c"]},
                {"action": "git", "op": "commit", "repo": "~/r", "message": "fix: it's done"}
            ])
        );
        let without = skill
            .expand(&args(json!({"repo": "~/r", "message": "m", "paths": null})))
            .unwrap();
        assert_eq!(
            serde_json::to_value(&without).unwrap()[0]["argv"],
            json!(["git", "add", "--all"])
        );
    }

    #[test]
    fn arguments_are_checked_with_clear_errors() {
        let skills = builtin();
        let commit = skills.get("git_commit").unwrap();
        let e = commit.expand(&args(json!({"repo": "~/r"}))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "skill git_commit: argument `message` is required (the commit message)"
        );
        let e = commit
            .expand(&args(json!({"repo": "~/r", "message": 3})))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "skill git_commit: argument `message` must be a string, not 3"
        );
        let e = commit
            .expand(&args(json!({"repo": "~/r", "message": "m", "force": true})))
            .unwrap_err();
        assert!(e.to_string().contains("unknown argument `force`"), "{e}");
        assert!(e.to_string().contains("repo, message, paths"), "{e}");
        let e = skills
            .get("run_tests")
            .unwrap()
            .expand(&args(json!({"dir": "--upload-pack=evil"})))
            .unwrap_err();
        assert!(e.to_string().contains("must not start with '-'"), "{e}");
        let e = skills
            .get("system_info")
            .unwrap()
            .expand(&args(json!({"x": 1})))
            .unwrap_err();
        assert!(e.to_string().contains("no arguments"), "{e}");
        let e = skills
            .expand(&[Step::Skill {
                name: "make_coffee".into(),
                args: Map::new(),
                artifacts: vec![],
            }])
            .unwrap_err();
        assert!(
            e.to_string().starts_with("`steps[0]`: there is no skill"),
            "{e}"
        );
        assert!(e.to_string().contains("run_tests"), "{e}");
    }

    #[test]
    fn values_in_shell_commands_are_quoted_so_they_stay_data() {
        let skills = Skills::from_toml(
            r#"
[[skill]]
name = "say"
description = "echo things"
[[skill.arg]]
name = "text"
type = "string"
required = true
description = "what to say"
[[skill.arg]]
name = "where"
type = "path"
default = "~/my notes"
description = "where"
[[skill.arg]]
name = "words"
type = "strings"
description = "more"
[[skill.step]]
action = "shell"
cmd = "echo {{text}} > {{where}}/out.txt"
[[skill.step]]
when = "words"
action = "python"
code = "print({{words}}, {{text}})"
"#,
        )
        .unwrap();
        let steps = skills
            .get("say")
            .unwrap()
            .expand(&args(
                json!({"text": "$(touch /tmp/pwned); `id` 'x'", "words": ["a\"b", "c"]}),
            ))
            .unwrap();
        let v = serde_json::to_value(&steps).unwrap();
        assert_eq!(
            v[0]["cmd"],
            r#"echo '$(touch /tmp/pwned); `id` '\''x'\''' > ~/'my notes'/out.txt"#
        );
        assert_eq!(
            v[1]["code"],
            r#"print(["a\"b", "c"], "$(touch /tmp/pwned); `id` 'x'")"#
        );
    }

    #[test]
    fn quoting_keeps_the_home_directory_expandable() {
        assert_eq!(quote_path("~"), "~");
        assert_eq!(quote_path("~/src/app"), "~/src/app");
        assert_eq!(quote_path("~/a b"), "~/'a b'");
        assert_eq!(quote_path("~root"), "'~root'");
        assert_eq!(quote_path("/tmp/x;y"), "'/tmp/x;y'");
    }

    #[test]
    fn integer_and_boolean_placeholders_keep_their_type() {
        let skills = Skills::from_toml(
            r#"
[[skill]]
name = "note"
description = "append a note"
[[skill.arg]]
name = "file"
type = "path"
required = true
description = "the file"
[[skill.arg]]
name = "append"
type = "boolean"
default = true
description = "append"
[[skill.arg]]
name = "limit"
type = "integer"
default = 30
description = "seconds"
[[skill.step]]
action = "file_write"
path = "{{file}}"
content = "note"
append = "{{append}}"
[[skill.step]]
action = "shell"
cmd = "sleep 1"
timeout_s = "{{limit}}"
"#,
        )
        .unwrap();
        let steps = skills
            .get("note")
            .unwrap()
            .expand(&args(json!({"file": "~/n.txt"})))
            .unwrap();
        assert!(matches!(steps[0], Step::FileWrite { append: true, .. }));
        assert_eq!(steps[1].timeout_s(), Some(30));
    }

    #[test]
    fn broken_skill_files_are_refused_with_the_reason() {
        let cases = [
            (
                "[[skill]]\nname = \"Bad Name\"\ndescription = \"d\"\n[[skill.step]]\naction = \"shell\"\ncmd = \"ls\"\n",
                "a skill name is",
            ),
            (
                "[[skill]]\nname = \"x\"\ndescription = \"d\"\n",
                "needs at least one",
            ),
            (
                "[[skill]]\nname = \"x\"\ndescription = \"d\"\n[[skill.step]]\naction = \"shell\"\ncmd = \"ls {{nope}}\"\n",
                "{{nope}} is not an argument",
            ),
            (
                "[[skill]]\nname = \"x\"\ndescription = \"d\"\n[[skill.arg]]\nname = \"p\"\ntype = \"path\"\ndescription = \"p\"\n[[skill.step]]\naction = \"shell\"\ncmd = \"ls {{p}}\"\n",
                "optional without a default",
            ),
            (
                "[[skill]]\nname = \"x\"\ndescription = \"d\"\n[[skill.step]]\naction = \"skill\"\nname = \"run_tests\"\n",
                "not other skills",
            ),
            (
                "[[skill]]\nname = \"x\"\ndescription = \"d\"\n[[skill.step]]\naction = \"shell\"\ncommand = \"ls\"\n",
                "unknown field `command`",
            ),
            (
                "[[skill]]\nname = \"x\"\ndescription = \"d\"\ncolour = 1\n",
                "unknown field `colour`",
            ),
            (
                "[[skill]]\nname = \"x\"\ndescription = \"d\"\n[[skill.arg]]\nname = \"l\"\ntype = \"strings\"\nrequired = true\ndescription = \"l\"\n[[skill.step]]\naction = \"file_read\"\npath = \"{{l}}\"\n",
                "a list can only stand alone",
            ),
        ];
        for (text, wanted) in cases {
            let e = Skills::from_toml(text).unwrap_err().to_string();
            assert!(e.contains(wanted), "{wanted:?} not in {e:?}");
        }
    }

    #[test]
    fn a_skills_file_adds_skills_and_replaces_builtins_by_name() {
        let mut skills = builtin();
        skills.extend(
            Skills::from_toml(
                "[[skill]]\nname = \"system_info\"\ndescription = \"just uname\"\n[[skill.step]]\naction = \"shell\"\ncmd = \"uname -a\"\n\n[[skill]]\nname = \"uptime\"\ndescription = \"uptime\"\n[[skill.step]]\naction = \"shell\"\ncmd = \"uptime\"\n",
            )
            .unwrap(),
        );
        assert_eq!(skills.names().len(), 7);
        assert_eq!(skills.get("system_info").unwrap().description, "just uname");
        assert!(skills.get("uptime").is_some());
    }

    #[test]
    fn the_readme_example_skill_loads_and_quotes_its_path() {
        let readme = include_str!("../README.md");
        let start = readme.find("```toml\n").expect("a toml example") + "```toml\n".len();
        let end = start + readme[start..].find("```").unwrap();
        let skills = Skills::from_toml(&readme[start..end]).unwrap();
        let steps = skills
            .get("tail_log")
            .unwrap()
            .expand(&args(json!({"file": "~/logs/app 1.log"})))
            .unwrap();
        assert_eq!(
            serde_json::to_value(&steps).unwrap(),
            json!([{"action": "shell", "cmd": "tail -n 50 ~/'logs/app 1.log'"}])
        );
    }

    #[test]
    fn artifacts_of_a_skill_step_go_to_its_last_step() {
        let steps = builtin()
            .expand(&[
                Step::FileRead {
                    path: "a".into(),
                    artifacts: vec![],
                },
                Step::Skill {
                    name: "git_commit".into(),
                    args: args(json!({"repo": "~/r", "message": "m"})),
                    artifacts: vec!["out/*.log".into()],
                },
            ])
            .unwrap();
        assert_eq!(steps.len(), 3);
        assert!(steps[1].artifacts().is_empty());
        assert_eq!(steps[2].artifacts(), ["out/*.log".to_owned()]);
    }

    #[test]
    fn read_only_skills_are_allowed_by_the_builtin_policy_and_every_skill_parses() {
        let policy = skynet_policy::Policy::builtin().unwrap();
        let skills = builtin();
        for (name, a, verdict) in [
            ("disk_usage", json!({}), skynet_policy::Verdict::Allow),
            (
                "disk_usage",
                json!({"path": "~/src"}),
                skynet_policy::Verdict::Allow,
            ),
            ("system_info", json!({}), skynet_policy::Verdict::Allow),
            (
                "run_tests",
                json!({"dir": "~/a"}),
                skynet_policy::Verdict::Approve,
            ),
            (
                "git_sync",
                json!({"repo": "~/a"}),
                skynet_policy::Verdict::Approve,
            ),
        ] {
            let steps = skills.get(name).unwrap().expand(&args(a)).unwrap();
            let j = policy.judge(&steps);
            assert_eq!(j.verdict, verdict, "{name}: {:?}", j.reasons);
            assert!(
                !j.reasons.iter().any(|r| r.contains("cannot read")),
                "{name}: {:?}",
                j.reasons
            );
        }
    }
}
