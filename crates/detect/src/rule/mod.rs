//! Rules: the TOML format (`docs/rules.md`), validation, and rule sets.

mod action;
mod parse;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use action::{Action, ActionKind, Rate};

use crate::conditions::{ConditionSpec, Predicate};
use crate::error::RuleError;
use crate::key::KeySpec;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look when convenient.
    Low,
    /// Worth a look today.
    Medium,
    /// Likely an attack in progress.
    High,
    /// An attack that probably succeeded.
    Critical,
}

impl Severity {
    /// The name used in rule files and findings.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    fn parse(text: &str) -> Option<Severity> {
        match text {
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// One validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) description: String,
    pub(crate) severity: Severity,
    pub(crate) filter_text: String,
    pub(crate) filter: Predicate,
    pub(crate) key: KeySpec,
    pub(crate) window_ns: i64,
    pub(crate) window_text: String,
    pub(crate) cooldown_ns: i64,
    pub(crate) condition: ConditionSpec,
    pub(crate) action: Option<Action>,
    pub(crate) dry_run: bool,
    pub(crate) enabled: bool,
    pub(crate) message: String,
    /// Canonical text of the rule's table, to tell whether a reload changed it.
    pub(crate) definition: String,
    pub(crate) source: String,
}

impl Rule {
    /// Unique id, `[a-z0-9_.-]+`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Short human name (the finding's `rule.name`).
    pub fn title(&self) -> &str {
        &self.title
    }

    /// What the rule detects and why its defaults are what they are.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Severity of its findings.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// The filter query as written (empty: every request).
    pub fn filter(&self) -> &str {
        &self.filter_text
    }

    /// The key's field names as shown in findings (`*` when the rule has no key).
    pub fn key(&self) -> &str {
        self.key.label()
    }

    /// The condition kind (`count`, `distinct`, ...).
    pub fn condition_kind(&self) -> &'static str {
        self.condition.kind()
    }

    /// The sliding window.
    pub fn window(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.window_ns as u64)
    }

    /// How long the rule stays quiet for one key after firing.
    pub fn cooldown(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.cooldown_ns as u64)
    }

    /// What the responder should do with its findings.
    pub fn action(&self) -> Option<&Action> {
        self.action.as_ref()
    }

    /// Whether findings are marked dry-run (recorded, not acted on).
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// Whether the rule is evaluated at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The file (or source name) the rule came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The regexes of a `pattern` rule that do not start with fixed text: nothing lets the
    /// engine skip a clean value for them, so every value of the rule's fields is searched
    /// with them (`apiwatch rules check` notes them). Empty for other rules.
    pub fn ungated_regexes(&self) -> Vec<&str> {
        match &self.condition {
            crate::conditions::ConditionSpec::Pattern(spec) => spec.ungated_regexes(),
            _ => Vec::new(),
        }
    }

    /// Whether `other` is the same definition (used to keep state across reloads).
    pub(crate) fn same_definition(&self, other: &Rule) -> bool {
        self.id == other.id && self.definition == other.definition
    }
}

/// A set of rules with unique ids.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

/// The built-in pack, one file per theme.
const BUILTIN_FILES: [(&str, &str); 5] = [
    ("builtin/auth.toml", include_str!("../../rules/auth.toml")),
    ("builtin/abuse.toml", include_str!("../../rules/abuse.toml")),
    (
        "builtin/anomaly.toml",
        include_str!("../../rules/anomaly.toml"),
    ),
    (
        "builtin/probes.toml",
        include_str!("../../rules/probes.toml"),
    ),
    (
        "builtin/errors.toml",
        include_str!("../../rules/errors.toml"),
    ),
];

impl RuleSet {
    /// Parses and validates one TOML rule file. `source_name` prefixes error positions.
    /// Every problem is reported, each as `file:line:column: message`.
    pub fn from_toml(source_name: &str, text: &str) -> Result<RuleSet, Vec<RuleError>> {
        parse::parse_file(source_name, text).map(|rules| RuleSet { rules })
    }

    /// Loads every `*.toml` file of `directory` in name order. Duplicate ids across files are
    /// errors.
    pub fn load_dir(directory: impl AsRef<Path>) -> Result<RuleSet, Vec<RuleError>> {
        let directory = directory.as_ref();
        let shown = directory.display().to_string();
        let entries = std::fs::read_dir(directory).map_err(|error| {
            vec![RuleError::whole_file(
                &shown,
                format!("failed to read rule directory: {error}"),
            )]
        })?;
        let mut paths = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => {
                    let path = entry.path();
                    if path
                        .extension()
                        .is_some_and(|extension| extension == "toml")
                        && path.is_file()
                    {
                        paths.push(path);
                    }
                }
                Err(error) => {
                    return Err(vec![RuleError::whole_file(
                        &shown,
                        format!("failed to list rule directory: {error}"),
                    )]);
                }
            }
        }
        paths.sort();
        let mut errors = Vec::new();
        let mut files = Vec::new();
        for path in paths {
            let name = path.display().to_string();
            match std::fs::read_to_string(&path) {
                Ok(text) => files.push((name, text)),
                Err(error) => errors.push(RuleError::whole_file(
                    &name,
                    format!("failed to read rule file: {error}"),
                )),
            }
        }
        let named: Vec<(&str, &str)> = files
            .iter()
            .map(|(name, text)| (name.as_str(), text.as_str()))
            .collect();
        match RuleSet::from_files(&named) {
            Ok(set) if errors.is_empty() => Ok(set),
            Ok(_) => Err(errors),
            Err(more) => {
                errors.extend(more);
                Err(errors)
            }
        }
    }

    /// Parses several named files as one set; duplicate ids across files are errors.
    fn from_files(files: &[(&str, &str)]) -> Result<RuleSet, Vec<RuleError>> {
        let mut errors = Vec::new();
        let mut rules: Vec<Rule> = Vec::new();
        for (name, text) in files {
            match parse::parse_file(name, text) {
                Ok(parsed) => {
                    for rule in parsed {
                        if let Some(existing) = rules.iter().find(|existing| existing.id == rule.id)
                        {
                            let offset = parse::id_offset(text, &rule.id);
                            errors.push(RuleError::at(
                                name,
                                text,
                                offset,
                                format!(
                                    "duplicate rule id `{}` (also in {})",
                                    rule.id, existing.source
                                ),
                            ));
                        } else {
                            rules.push(rule);
                        }
                    }
                }
                Err(more) => errors.extend(more),
            }
        }
        if errors.is_empty() {
            Ok(RuleSet { rules })
        } else {
            Err(errors)
        }
    }

    /// The built-in pack (`crates/detect/rules/*.toml`, embedded in the binary).
    ///
    /// # Panics
    /// If the embedded pack does not validate; the pack's tests make sure it does.
    pub fn builtin() -> RuleSet {
        match RuleSet::from_files(&BUILTIN_FILES) {
            Ok(set) => set,
            Err(errors) => {
                let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
                panic!("the built-in rule pack is invalid:\n{}", listed.join("\n"))
            }
        }
    }

    /// Adds `other`'s rules; a rule whose id is already present replaces it (so a site file can
    /// override or disable a built-in rule by id).
    pub fn merge(&mut self, other: RuleSet) {
        for rule in other.rules {
            match self
                .rules
                .iter_mut()
                .find(|existing| existing.id == rule.id)
            {
                Some(existing) => *existing = rule,
                None => self.rules.push(rule),
            }
        }
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with id `id`.
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.id == id)
    }

    /// Keeps only the rules for which `keep` returns true (e.g. to backtest one rule).
    pub fn retain(&mut self, mut keep: impl FnMut(&Rule) -> bool) {
        self.rules.retain(|rule| keep(rule));
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the set has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}
