//! The engine: evaluates every enabled rule on each request event, in event time.
//!
//! Time is the event's `@timestamp`, so a backtest over stored events behaves like the live
//! stream. Windows slide on the newest event time seen per key; events up to one window late
//! still count (see the `window` module). Memory is bounded by [`EngineLimits::max_state_bytes`]:
//! when a rule's table would grow past the cap, the least useful keys (idle first, then the
//! fewest events) are evicted, from the largest table first, and counted in
//! `apiwatch_detect_evictions_total`.

mod table;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use apiwatch_event::{Event, EventKind};
use prometheus_client::registry::Registry;

use crate::conditions::baseline::BaselineState;
use crate::conditions::count::{CountState, SumState};
use crate::conditions::distinct::DistinctState;
use crate::conditions::outlier::OutlierState;
use crate::conditions::pattern::{PatternHit, PatternIndex, PatternState};
use crate::conditions::ratio::RatioState;
use crate::conditions::sequence::{SequenceState, Step};
use crate::conditions::{ConditionSpec, Crossing, Predicate, display_value, render_template};
use crate::finding::Finding;
use crate::key::KeySpec;
use crate::metrics::Metrics;
use crate::rule::{Rule, RuleSet};
use crate::window::Buckets;
use apiwatch_event::timestamp::{NanosParser, format_nanos};
pub(crate) use table::SAMPLES;
use table::{Fire, Table, Update};

/// Limits of an [`Engine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineLimits {
    /// Cap on the estimated bytes of per-key state across all rules (default 256 MiB).
    pub max_state_bytes: usize,
}

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits {
            max_state_bytes: 256 << 20,
        }
    }
}

impl EngineLimits {
    /// Limits with a state cap of `max_state_bytes`.
    pub fn with_max_state_bytes(max_state_bytes: usize) -> EngineLimits {
        EngineLimits { max_state_bytes }
    }
}

/// State of learning rules (baseline, outlier) is kept this long without events.
const LEARNED_IDLE_NS: i64 = 24 * 3600 * 1_000_000_000;

/// One rule's per-key state, by condition kind.
#[derive(Debug)]
enum RuleState {
    Count(Table<CountState>),
    Sum(Table<SumState>),
    Distinct(Table<DistinctState>),
    Ratio(Table<RatioState>),
    Baseline(Table<BaselineState>),
    Outlier(Table<OutlierState>),
    Pattern(Table<PatternState>),
    Sequence(Table<SequenceState>),
}

macro_rules! each_table {
    ($state:expr, $table:ident => $body:expr) => {
        match $state {
            RuleState::Count($table) => $body,
            RuleState::Sum($table) => $body,
            RuleState::Distinct($table) => $body,
            RuleState::Ratio($table) => $body,
            RuleState::Baseline($table) => $body,
            RuleState::Outlier($table) => $body,
            RuleState::Pattern($table) => $body,
            RuleState::Sequence($table) => $body,
        }
    };
}

impl RuleState {
    fn for_condition(condition: &ConditionSpec) -> RuleState {
        match condition {
            ConditionSpec::Count(_) => RuleState::Count(Table::default()),
            ConditionSpec::Sum(_) => RuleState::Sum(Table::default()),
            ConditionSpec::Distinct(_) => RuleState::Distinct(Table::default()),
            ConditionSpec::Ratio(_) => RuleState::Ratio(Table::default()),
            ConditionSpec::Baseline(_) => RuleState::Baseline(Table::default()),
            ConditionSpec::Outlier(_) => RuleState::Outlier(Table::default()),
            ConditionSpec::Pattern(_) => RuleState::Pattern(Table::default()),
            ConditionSpec::Sequence(_) => RuleState::Sequence(Table::default()),
        }
    }

    fn bytes(&self) -> usize {
        each_table!(self, table => table.bytes())
    }

    fn growth_bytes(&self, key: u64) -> usize {
        each_table!(self, table => table.growth_bytes(key))
    }

    fn len(&self) -> usize {
        each_table!(self, table => table.len())
    }

    fn sweep(&mut self, oldest_ns: i64) -> usize {
        each_table!(self, table => table.sweep(oldest_ns))
    }

    fn evict(&mut self, fraction: f64, idle_before_ns: i64, shrink: bool) -> usize {
        each_table!(self, table => table.evict(fraction, idle_before_ns, shrink))
    }
}

/// What one event means to one rule, computed before its state is touched.
enum Input {
    Count,
    Sum(u64),
    Distinct(u64),
    Ratio(bool),
    Baseline(f64),
    Outlier(f64),
    Pattern(PatternHit),
    Sequence(Step),
}

/// What decides cheaply whether a rule looks at an event, kept apart from the (large) rule so
/// that skipping a rule touches one small array.
#[derive(Debug, Clone, Copy)]
struct RuleGate {
    /// A pattern rule: skipped unless the event had pattern hits.
    pattern: bool,
    /// Position of the rule's filter in [`Filters`]; `None` when it has none.
    filter: Option<usize>,
    /// Position of the rule's key in [`KeyHashes`].
    key: usize,
}

/// The distinct filters of the engine's rules, each evaluated at most once per event however
/// many rules share it (`key:*` guards four built-in rules).
#[derive(Debug, Default)]
struct Filters {
    texts: Vec<String>,
    predicates: Vec<Predicate>,
    /// This event's results by filter: `None` until evaluated.
    results: Vec<Option<bool>>,
}

impl Filters {
    /// The position of the filter written `text`, added if new.
    fn position(&mut self, text: &str, predicate: &Predicate) -> usize {
        match self.texts.iter().position(|known| known == text) {
            Some(position) => position,
            None => {
                self.texts.push(text.to_owned());
                self.predicates.push(predicate.clone());
                self.results.push(None);
                self.texts.len() - 1
            }
        }
    }

    /// Forgets the previous event's results.
    fn clear(&mut self) {
        self.results.fill(None);
    }

    /// Whether filter `position` matches `event`, evaluated on first use.
    fn matches(&mut self, position: usize, event: &Event) -> bool {
        *self.results[position].get_or_insert_with(|| self.predicates[position].matches(event))
    }
}

/// The distinct key specs of the engine's rules (and the fields of `distinct` conditions,
/// hashed the same way), each hashed at most once per event however many rules share it.
#[derive(Debug, Default)]
struct KeyHashes {
    specs: Vec<KeySpec>,
    /// What each event starts with: the hash of the global key, which never changes.
    fixed: Vec<Option<Option<u64>>>,
    /// This event's hashes by spec: `None` until computed, `Some(None)` when a field is missing.
    hashes: Vec<Option<Option<u64>>>,
}

impl KeyHashes {
    /// The position of `spec`, added if new.
    fn position(&mut self, spec: KeySpec, hasher: &RandomState) -> usize {
        match self.specs.iter().position(|known| *known == spec) {
            Some(position) => position,
            None => {
                let fixed = spec
                    .is_global()
                    .then(|| Some(hasher.build_hasher().finish()));
                self.specs.push(spec);
                self.fixed.push(fixed);
                self.hashes.push(fixed);
                self.specs.len() - 1
            }
        }
    }

    /// Forgets the previous event's hashes.
    fn clear(&mut self) {
        self.hashes.copy_from_slice(&self.fixed);
    }

    /// The hash of spec `position` for `event`, computed on first use.
    fn get(&mut self, position: usize, event: &Event, hasher: &RandomState) -> Option<u64> {
        *self.hashes[position].get_or_insert_with(|| self.specs[position].hash(event, hasher))
    }
}

/// A rule with its state.
#[derive(Debug)]
struct RuleRuntime {
    rule: Rule,
    /// Position of a `distinct` condition's field in [`KeyHashes`].
    distinct_field: Option<usize>,
    state: RuleState,
    buckets: Buckets,
    /// Position among pattern rules, for [`PatternHit::rule`].
    pattern_ordinal: Option<u32>,
    /// Keys idle this long are dropped by the periodic sweep.
    idle_ns: i64,
    next_sweep_ns: i64,
}

impl RuleRuntime {
    fn new(
        rule: Rule,
        state: Option<RuleState>,
        keys: &mut KeyHashes,
        hasher: &RandomState,
    ) -> RuleRuntime {
        let idle_ns = match rule.condition {
            ConditionSpec::Baseline(ref spec) => {
                LEARNED_IDLE_NS.max(spec.interval_ns.saturating_mul(10))
            }
            ConditionSpec::Outlier(_) => LEARNED_IDLE_NS,
            _ => rule.window_ns.max(rule.cooldown_ns),
        };
        let distinct_field = match &rule.condition {
            ConditionSpec::Distinct(spec) => {
                Some(keys.position(KeySpec::of_field(spec.field.clone()), hasher))
            }
            _ => None,
        };
        RuleRuntime {
            distinct_field,
            state: state.unwrap_or_else(|| RuleState::for_condition(&rule.condition)),
            buckets: Buckets::for_window(rule.window_ns),
            pattern_ordinal: None,
            idle_ns,
            next_sweep_ns: i64::MIN,
            rule,
        }
    }

    /// What the event means to this rule, or `None` when the rule ignores it.
    fn input(
        &self,
        event: &Event,
        hits: &[PatternHit],
        keys: &mut KeyHashes,
        hasher: &RandomState,
    ) -> Option<Input> {
        let input = match &self.rule.condition {
            ConditionSpec::Count(_) => Input::Count,
            ConditionSpec::Sum(spec) => {
                Input::Sum(spec.field.get(event)?.as_number()?.max(0.0) as u64)
            }
            // The field's value hash is the hash of a key made of that field alone.
            ConditionSpec::Distinct(_) => {
                Input::Distinct(keys.get(self.distinct_field?, event, hasher)?)
            }
            ConditionSpec::Ratio(spec) => Input::Ratio(spec.matcher.matches(event)),
            ConditionSpec::Baseline(spec) => match &spec.field {
                Some(field) => Input::Baseline(field.get(event)?.as_number()?.max(0.0)),
                None => Input::Baseline(1.0),
            },
            ConditionSpec::Outlier(spec) => Input::Outlier(spec.field.get(event)?.as_number()?),
            ConditionSpec::Pattern(_) => {
                let ordinal = self.pattern_ordinal?;
                Input::Pattern(*hits.iter().find(|hit| hit.rule == ordinal)?)
            }
            ConditionSpec::Sequence(spec) => match spec.step(event) {
                Step::Neither => return None,
                step => Input::Sequence(step),
            },
        };
        Some(input)
    }

    /// Updates the key's state and returns a fire when the rule fires.
    fn apply(
        &mut self,
        key: u64,
        input: Input,
        at_ns: i64,
        event_id: impl FnOnce() -> Option<u128>,
    ) -> Option<Fire> {
        let bucket = self.buckets.index(at_ns);
        let cooldown = self.rule.cooldown_ns;
        let sampled = |crossing| Update {
            crossing,
            sample: true,
        };
        match (&mut self.state, &self.rule.condition, input) {
            (RuleState::Count(table), ConditionSpec::Count(spec), Input::Count) => table.observe(
                key,
                at_ns,
                cooldown,
                event_id,
                || spec.new_state(bucket),
                |state| Update {
                    crossing: spec.observe(state, bucket),
                    sample: spec.worth_sampling(state),
                },
            ),
            (RuleState::Sum(table), ConditionSpec::Sum(spec), Input::Sum(amount)) => table.observe(
                key,
                at_ns,
                cooldown,
                event_id,
                || spec.new_state(bucket),
                |state| Update {
                    crossing: spec.observe(state, bucket, amount),
                    sample: spec.worth_sampling(state),
                },
            ),
            (RuleState::Distinct(table), ConditionSpec::Distinct(spec), Input::Distinct(value)) => {
                table.observe(
                    key,
                    at_ns,
                    cooldown,
                    event_id,
                    || spec.new_state(at_ns),
                    |state| sampled(spec.observe(state, value, at_ns)),
                )
            }
            (RuleState::Ratio(table), ConditionSpec::Ratio(spec), Input::Ratio(matched)) => table
                .observe(
                    key,
                    at_ns,
                    cooldown,
                    event_id,
                    || spec.new_state(bucket),
                    |state| Update {
                        crossing: spec.observe(state, bucket, matched),
                        sample: matched,
                    },
                ),
            (
                RuleState::Baseline(table),
                ConditionSpec::Baseline(spec),
                Input::Baseline(amount),
            ) => table.observe(
                key,
                at_ns,
                cooldown,
                event_id,
                || spec.new_state(at_ns),
                |state| Update {
                    crossing: spec.observe(state, at_ns, amount),
                    sample: spec.worth_sampling(state),
                },
            ),
            (RuleState::Outlier(table), ConditionSpec::Outlier(spec), Input::Outlier(value)) => {
                table.observe(
                    key,
                    at_ns,
                    cooldown,
                    event_id,
                    || spec.new_state(),
                    |state| {
                        let crossing = spec.observe(state, value);
                        Update {
                            sample: crossing.is_some(),
                            crossing,
                        }
                    },
                )
            }
            (RuleState::Pattern(table), ConditionSpec::Pattern(spec), Input::Pattern(hit)) => table
                .observe(
                    key,
                    at_ns,
                    cooldown,
                    event_id,
                    || spec.new_state(bucket),
                    |state| Update {
                        crossing: spec.observe(state, bucket, hit),
                        sample: spec.worth_sampling(state),
                    },
                ),
            (RuleState::Sequence(table), ConditionSpec::Sequence(spec), Input::Sequence(step)) => {
                table.observe(
                    key,
                    at_ns,
                    cooldown,
                    event_id,
                    || spec.new_state(bucket),
                    |state| sampled(spec.observe(state, bucket, step)),
                )
            }
            _ => None,
        }
    }
}

/// Evaluates rules over a stream of events. Not shared between threads; run one per stream.
#[derive(Debug)]
pub struct Engine {
    rules: Vec<RuleRuntime>,
    /// One per rule, in the same order.
    gates: Vec<RuleGate>,
    filters: Filters,
    patterns: PatternIndex,
    pattern_hits: Vec<PatternHit>,
    keys: KeyHashes,
    hasher: RandomState,
    time: NanosParser,
    limits: EngineLimits,
    now_ns: i64,
    /// Event time of the next sweep of idle keys (the earliest rule's).
    next_sweep_ns: i64,
    metrics: Metrics,
}

impl Engine {
    /// An engine evaluating the enabled rules of `rules`.
    pub fn new(rules: RuleSet, limits: EngineLimits) -> Engine {
        let mut engine = Engine {
            rules: Vec::new(),
            gates: Vec::new(),
            filters: Filters::default(),
            patterns: PatternIndex::default(),
            pattern_hits: Vec::new(),
            keys: KeyHashes::default(),
            hasher: RandomState::new(),
            time: NanosParser::default(),
            limits,
            now_ns: i64::MIN,
            next_sweep_ns: i64::MIN,
            metrics: Metrics::default(),
        };
        engine.replace_rules(rules);
        engine
    }

    /// Replaces the rules. Rules whose definition is unchanged keep their state (counts,
    /// learned baselines, cooldowns); changed, new and disabled rules start empty.
    pub fn replace_rules(&mut self, rules: RuleSet) {
        let mut old = std::mem::take(&mut self.rules);
        let mut runtimes = Vec::new();
        self.keys = KeyHashes::default();
        self.filters = Filters::default();
        for rule in rules.rules().iter().filter(|rule| rule.enabled) {
            let kept = old
                .iter()
                .position(|runtime| runtime.rule.same_definition(rule))
                .map(|position| old.swap_remove(position));
            runtimes.push(match kept {
                Some(runtime) => RuleRuntime::new(
                    rule.clone(),
                    Some(runtime.state),
                    &mut self.keys,
                    &self.hasher,
                ),
                None => RuleRuntime::new(rule.clone(), None, &mut self.keys, &self.hasher),
            });
        }
        let mut ordinal = 0u32;
        for runtime in &mut runtimes {
            if let ConditionSpec::Pattern(_) = runtime.rule.condition {
                runtime.pattern_ordinal = Some(ordinal);
                ordinal += 1;
            }
        }
        self.patterns =
            PatternIndex::build(runtimes.iter().filter_map(
                |runtime| match &runtime.rule.condition {
                    ConditionSpec::Pattern(spec) => Some(spec),
                    _ => None,
                },
            ));
        self.gates = runtimes
            .iter()
            .map(|runtime| RuleGate {
                pattern: runtime.pattern_ordinal.is_some(),
                filter: (!runtime.rule.filter.is_always()).then(|| {
                    self.filters
                        .position(&runtime.rule.filter_text, &runtime.rule.filter)
                }),
                key: self.keys.position(runtime.rule.key.clone(), &self.hasher),
            })
            .collect();
        self.rules = runtimes;
        self.next_sweep_ns = i64::MIN;
        self.metrics.state_bytes.set(self.state_bytes() as i64);
    }

    /// Registers `apiwatch_detect_events_total`, `apiwatch_detect_findings_total{rule}`,
    /// `apiwatch_detect_state_bytes` and `apiwatch_detect_evictions_total`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }

    /// Estimated bytes of per-key state across all rules.
    pub fn state_bytes(&self) -> usize {
        self.rules.iter().map(|runtime| runtime.state.bytes()).sum()
    }

    /// Keys evicted so far to respect the memory cap.
    pub fn evictions(&self) -> u64 {
        self.metrics.evictions.get()
    }

    /// Number of keys held by rule `rule_id` (for tests and diagnostics).
    pub fn keys_of(&self, rule_id: &str) -> usize {
        self.rules
            .iter()
            .find(|runtime| runtime.rule.id == rule_id)
            .map_or(0, |runtime| runtime.state.len())
    }

    /// Evaluates one event and returns the findings it triggers. Only request events are
    /// evaluated; findings, audit and system events are ignored.
    pub fn observe(&mut self, event: &Event) -> Vec<Finding> {
        let mut findings = Vec::new();
        if event.kind != EventKind::Request {
            return findings;
        }
        self.metrics.events.inc();
        let at_ns = match self.time.parse(&event.timestamp) {
            Some(at_ns) => at_ns,
            None if self.now_ns != i64::MIN => self.now_ns,
            None => 0,
        };
        self.now_ns = self.now_ns.max(at_ns);
        self.pattern_hits.clear();
        self.keys.clear();
        self.filters.clear();
        if !self.patterns.is_empty() {
            self.patterns.scan(event, &mut self.pattern_hits);
        }
        let mut parsed_id: Option<Option<u128>> = None;
        let mut grew = false;
        // Cheapest first: pattern hits, then the filter (shared by rules), then the input and
        // the key hash (shared too), so most rules are skipped without touching their state.
        for index in 0..self.gates.len() {
            let gate = self.gates[index];
            if gate.pattern && self.pattern_hits.is_empty() {
                continue;
            }
            if let Some(filter) = gate.filter {
                if !self.filters.matches(filter, event) {
                    continue;
                }
            }
            let runtime = &self.rules[index];
            let Some(input) =
                runtime.input(event, &self.pattern_hits, &mut self.keys, &self.hasher)
            else {
                continue;
            };
            let Some(key) = self.keys.get(gate.key, event, &self.hasher) else {
                continue;
            };
            grew |= self.observe_rule(
                index,
                key,
                input,
                event,
                at_ns,
                &mut parsed_id,
                &mut findings,
            );
        }
        if grew || self.now_ns >= self.next_sweep_ns {
            self.sweep_and_bound();
        }
        findings
    }

    /// Observes one event for rule `index`; returns whether the rule's state may have grown.
    #[allow(clippy::too_many_arguments)]
    fn observe_rule(
        &mut self,
        index: usize,
        key: u64,
        input: Input,
        event: &Event,
        at_ns: i64,
        parsed_id: &mut Option<Option<u128>>,
        findings: &mut Vec<Finding>,
    ) -> bool {
        let growth = self.rules[index].state.growth_bytes(key);
        if growth > 0 {
            self.make_room(index, growth);
        }
        let runtime = &mut self.rules[index];
        let keys_before = runtime.state.len();
        // Distinct sets also grow inside their slots; other kinds only by adding keys.
        let distinct = matches!(runtime.state, RuleState::Distinct(_));
        let bytes_before = if distinct { runtime.state.bytes() } else { 0 };
        let event_id = || {
            *parsed_id
                .get_or_insert_with(|| uuid::Uuid::try_parse(&event.id).ok().map(|id| id.as_u128()))
        };
        if let Some(fire) = runtime.apply(key, input, at_ns, event_id) {
            self.metrics.finding(&runtime.rule.id);
            findings.push(build_finding(&runtime.rule, event, at_ns, fire));
        }
        growth > 0
            || runtime.state.len() != keys_before
            || (distinct && runtime.state.bytes() > bytes_before)
    }

    /// Makes room for `growth` more bytes in rule `index`'s table: evicts half of the largest
    /// other table while that is enough to help, else a quarter of this table (which then
    /// does not need to grow).
    fn make_room(&mut self, index: usize, growth: usize) {
        let cap = self.limits.max_state_bytes;
        for _ in 0..8 {
            let total = self.state_bytes();
            if total + growth <= cap {
                return;
            }
            let largest =
                (0..self.rules.len()).max_by_key(|candidate| self.rules[*candidate].state.bytes());
            match largest {
                Some(largest) if largest != index && self.rules[largest].state.len() > 0 => {
                    let idle_before = self.now_ns.saturating_sub(self.rules[largest].idle_ns);
                    let evicted = self.rules[largest].state.evict(0.5, idle_before, true);
                    self.metrics.evictions.inc_by(evicted as u64);
                }
                _ => break,
            }
        }
        if self.state_bytes() + growth > cap {
            let idle_before = self.now_ns.saturating_sub(self.rules[index].idle_ns);
            let evicted = self.rules[index].state.evict(0.25, idle_before, false);
            self.metrics.evictions.inc_by(evicted as u64);
        }
    }

    /// Drops idle keys of rules whose sweep is due, then evicts while over the cap (state that
    /// grew inside slots, such as distinct sets).
    fn sweep_and_bound(&mut self) {
        let now = self.now_ns;
        for runtime in &mut self.rules {
            if now >= runtime.next_sweep_ns {
                runtime.state.sweep(now.saturating_sub(runtime.idle_ns));
                runtime.next_sweep_ns = now.saturating_add(runtime.idle_ns);
            }
        }
        self.next_sweep_ns = self
            .rules
            .iter()
            .map(|runtime| runtime.next_sweep_ns)
            .min()
            .unwrap_or(i64::MAX);
        let cap = self.limits.max_state_bytes;
        let mut total = self.state_bytes();
        while total > cap {
            let Some(largest) =
                (0..self.rules.len()).max_by_key(|candidate| self.rules[*candidate].state.bytes())
            else {
                break;
            };
            let idle_before = now.saturating_sub(self.rules[largest].idle_ns);
            let evicted = self.rules[largest].state.evict(0.5, idle_before, true);
            self.metrics.evictions.inc_by(evicted as u64);
            let after = self.state_bytes();
            if evicted == 0 || after >= total {
                break;
            }
            total = after;
        }
        self.metrics.state_bytes.set(total as i64);
    }
}

/// Builds the finding of a fire.
fn build_finding(rule: &Rule, event: &Event, at_ns: i64, fire: Fire) -> Finding {
    let evidence = fire.crossing.evidence(&rule.condition);
    let key_value = rule.key.render(event);
    let window_ns = match (&rule.condition, fire.crossing) {
        (ConditionSpec::Baseline(spec), Crossing::Baseline { .. }) => spec.interval_ns,
        _ => rule.window_ns,
    };
    let mut values: Vec<(&str, String)> = vec![
        ("key", key_value.clone()),
        ("key_field", rule.key.label().to_owned()),
        ("window", rule.window_text.clone()),
        ("title", rule.title.clone()),
        ("rule", rule.id.clone()),
    ];
    for (name, value) in &evidence {
        values.push((name.as_str(), display_value(value)));
    }
    let message = render_template(&rule.message, &values);
    Finding {
        timestamp: format_nanos(at_ns),
        rule_id: rule.id.clone(),
        rule_name: rule.title.clone(),
        severity: rule.severity,
        key_field: rule.key.label().to_owned(),
        key_value,
        window_start: format_nanos(at_ns.saturating_sub(window_ns)),
        window_end: format_nanos(at_ns),
        evidence,
        sample_event_ids: fire
            .samples
            .iter()
            .map(|id| uuid::Uuid::from_u128(*id).hyphenated().to_string())
            .collect(),
        action: rule.action.clone(),
        dry_run: rule.dry_run,
        message,
        service_name: event.service_name.clone(),
    }
}

#[cfg(test)]
mod tests;
