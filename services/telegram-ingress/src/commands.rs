//! Reading what people write: commands (`/run@this_bot ...`), mentions in groups, and the
//! difference between a goal in words and an exact command.

/// What a message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Run(String),
    Status(String),
    Jobs,
    Logs(String),
    Cancel(String),
    Approve(String),
    Deny {
        id: String,
        reason: Option<String>,
    },
    Workers,
    /// `/every <spec> <request>`: a schedule.
    Every(String),
    Schedules,
    /// A command this bot does not know, addressed to it.
    Unknown(String),
}

/// What to do with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Command(Command),
    /// Not for this bot: another bot's command, or group chatter.
    Ignore,
}

/// The commands and their descriptions, as registered with `setMyCommands`.
pub const LIST: [(&str, &str); 11] = [
    ("run", "Plan and run something: /run what to do"),
    ("status", "A job's state, plan and result: /status id"),
    ("jobs", "The latest jobs"),
    ("logs", "A job's whole output: /logs id"),
    ("cancel", "Stop a job: /cancel id"),
    ("approve", "Approve a job that waits: /approve id"),
    ("deny", "Deny a job that waits: /deny id [reason]"),
    ("workers", "The machines and what they run"),
    ("every", "Run something on a schedule: /every 1h what to do"),
    (
        "schedules",
        "The schedules, with buttons to pause and approve",
    ),
    ("help", "What this bot can do"),
];

/// Parses a message. `bot` is this bot's username (without `@`); in groups only commands
/// and messages that mention the bot count.
pub fn parse(text: &str, bot: Option<&str>, group: bool) -> Parsed {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('/') {
        let (token, args) = match rest.find(char::is_whitespace) {
            Some(i) => (&rest[..i], rest[i..].trim()),
            None => (rest, ""),
        };
        let (name, target) = match token.split_once('@') {
            Some((n, t)) => (n, Some(t)),
            None => (token, None),
        };
        if let Some(t) = target
            && !bot.is_some_and(|b| b.eq_ignore_ascii_case(t))
        {
            return Parsed::Ignore;
        }
        let name = name.to_ascii_lowercase();
        let args = args.to_owned();
        let (first, rest) = match args.find(char::is_whitespace) {
            Some(i) => (args[..i].to_owned(), Some(args[i..].trim().to_owned())),
            None => (args.clone(), None),
        };
        let command = match name.as_str() {
            "help" | "start" => Command::Help,
            "run" => Command::Run(args),
            "status" => Command::Status(first),
            "jobs" => Command::Jobs,
            "logs" => Command::Logs(first),
            "cancel" => Command::Cancel(first),
            "approve" => Command::Approve(first),
            "deny" => Command::Deny {
                id: first,
                reason: rest.filter(|r| !r.is_empty()),
            },
            "workers" => Command::Workers,
            "every" => Command::Every(args),
            "schedules" => Command::Schedules,
            // In a group, an unknown command is probably another bot's.
            _ if group && target.is_none() => return Parsed::Ignore,
            other => Command::Unknown(other.chars().take(32).collect()),
        };
        return Parsed::Command(command);
    }
    if !group {
        return Parsed::Command(Command::Run(text.to_owned()));
    }
    match bot.and_then(|b| strip_mention(text, b)) {
        Some(rest) => Parsed::Command(Command::Run(rest)),
        None => Parsed::Ignore,
    }
}

/// The text without `@bot`, if it mentions the bot.
fn strip_mention(text: &str, bot: &str) -> Option<String> {
    let needle = format!("@{}", bot.to_ascii_lowercase());
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower[from..].find(&needle) {
        let start = from + pos;
        let end = start + needle.len();
        let word_end = lower[end..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        if word_end {
            let rest = format!("{} {}", &text[..start], &text[end..]);
            return Some(rest.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        from = end;
    }
    None
}

/// What `/run` text means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// Words for the planner.
    Goal(String),
    /// An exact shell command: the text was code (`` `cmd` ``, a code block, or `$ cmd`).
    Shell(String),
}

/// Tells a goal from an exact command. `whole_is_code` is true when Telegram marked the
/// whole text as code (people's clients turn `` `x` `` into a code entity).
pub fn intent(text: &str, whole_is_code: bool) -> Option<Intent> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    let shell = |cmd: &str| {
        let cmd = cmd.trim();
        (!cmd.is_empty()).then(|| Intent::Shell(cmd.to_owned()))
    };
    if whole_is_code {
        return shell(t);
    }
    if t.len() >= 6 && t.starts_with("```") && t.ends_with("```") {
        let inner = &t[3..t.len() - 3];
        // A language tag on the first line (```sh) is not part of the command.
        let inner = match inner.split_once('\n') {
            Some((first, rest))
                if !first.trim().is_empty()
                    && first.trim().chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                rest
            }
            _ => inner,
        };
        return shell(inner);
    }
    if t.len() >= 2 && t.starts_with('`') && t.ends_with('`') && !t[1..t.len() - 1].contains('`') {
        return shell(&t[1..t.len() - 1]);
    }
    if let Some(rest) = t.strip_prefix("$ ") {
        return shell(rest);
    }
    Some(Intent::Goal(t.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(text: &str, group: bool) -> Parsed {
        parse(text, Some("skynet_bot"), group)
    }

    #[test]
    fn commands_parse_with_and_without_the_bot_name() {
        assert_eq!(cmd("/help", false), Parsed::Command(Command::Help));
        assert_eq!(cmd("/start", false), Parsed::Command(Command::Help));
        assert_eq!(
            cmd("/run@Skynet_Bot  echo hi  ", true),
            Parsed::Command(Command::Run("echo hi".into()))
        );
        assert_eq!(cmd("/run@other_bot echo hi", true), Parsed::Ignore);
        assert_eq!(
            cmd("/status abc123 extra", false),
            Parsed::Command(Command::Status("abc123".into()))
        );
        assert_eq!(
            cmd("/deny abc123 not   today", false),
            Parsed::Command(Command::Deny {
                id: "abc123".into(),
                reason: Some("not   today".into())
            })
        );
        assert_eq!(
            cmd("/deny abc123", false),
            Parsed::Command(Command::Deny {
                id: "abc123".into(),
                reason: None
            })
        );
        assert_eq!(
            cmd("/frobnicate", false),
            Parsed::Command(Command::Unknown("frobnicate".into()))
        );
        assert_eq!(cmd("/frobnicate", true), Parsed::Ignore);
        assert_eq!(
            cmd("/", false),
            Parsed::Command(Command::Unknown("".into()))
        );
    }

    #[test]
    fn in_groups_only_commands_and_mentions_count() {
        assert_eq!(cmd("run the tests", true), Parsed::Ignore);
        assert_eq!(cmd("mail @skynet_botty", true), Parsed::Ignore);
        assert_eq!(
            cmd("@skynet_bot run the tests", true),
            Parsed::Command(Command::Run("run the tests".into()))
        );
        assert_eq!(
            cmd("run the tests", false),
            Parsed::Command(Command::Run("run the tests".into()))
        );
        assert_eq!(parse("@x hi", None, true), Parsed::Ignore);
    }

    #[test]
    fn code_is_a_command_and_words_are_a_goal() {
        assert_eq!(
            intent("`ls -la`", false),
            Some(Intent::Shell("ls -la".into()))
        );
        assert_eq!(
            intent("```sh\nmake && make test\n```", false),
            Some(Intent::Shell("make && make test".into()))
        );
        assert_eq!(
            intent("```echo one```", false),
            Some(Intent::Shell("echo one".into()))
        );
        assert_eq!(
            intent("$ uptime", false),
            Some(Intent::Shell("uptime".into()))
        );
        assert_eq!(intent("uptime", true), Some(Intent::Shell("uptime".into())));
        assert_eq!(
            intent("run the tests in ~/src/app", false),
            Some(Intent::Goal("run the tests in ~/src/app".into()))
        );
        assert_eq!(
            intent("use `a` and `b`", false),
            Some(Intent::Goal("use `a` and `b`".into()))
        );
        assert_eq!(intent("   ", false), None);
        assert_eq!(intent("``", false), None);
        assert_eq!(intent("`", false), Some(Intent::Goal("`".into())));
        assert_eq!(intent("``````", false), None);
    }
}
