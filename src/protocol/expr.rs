//! Gate pass thresholds as data: `coverage >= 0.90 and blocking_errors == 0`.
//!
//! Grammar: `clause (and clause)*`, `clause = name op value`, `op = == | != | >= | <= | > | <`,
//! `value = number | name`. A name on the right is a constant from the release plan (`rto`) or a
//! severity level (`none`, `low`, `medium`, `high`, `critical` = 0..4).

use std::collections::BTreeMap;
use std::fmt;

/// A parsed threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The `and`-joined clauses; all must hold for the gate to pass.
    pub clauses: Vec<Clause>,
}

/// One comparison, e.g. `coverage >= 0.90`.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    /// Metric the release measures, e.g. `coverage`, `drift_severity`.
    pub metric: String,
    /// The comparison.
    pub op: Op,
    /// What the metric is compared with.
    pub value: Operand,
}

/// Comparison operators. `==`, `!=`, `>=` and `<=` allow a 1e-9 tolerance; `>` and `<` are strict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>=`
    Ge,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `<`
    Lt,
}

/// Right-hand side of a clause.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A literal, e.g. `0.90`.
    Number(f64),
    /// A plan constant (`rto`) or a severity level (`low` = 1); unknown names fail the clause.
    Name(String),
}

/// Result of evaluating one clause.
#[derive(Debug, Clone, PartialEq)]
pub struct ClauseResult {
    /// The clause as written back, e.g. `coverage >= 0.9`.
    pub text: String,
    /// The metric's value, `None` if the release has not measured it.
    pub actual: Option<f64>,
    /// Whether the clause held.
    pub passed: bool,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Ge => ">=",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Lt => "<",
        })
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Number(n) => write!(f, "{n}"),
            Operand::Name(n) => f.write_str(n),
        }
    }
}

impl fmt::Display for Clause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.metric, self.op, self.value)
    }
}

/// Severity levels usable as constants (`drift_severity <= low`).
pub fn severity_value(name: &str) -> Option<f64> {
    match name {
        "none" => Some(0.0),
        "low" => Some(1.0),
        "medium" => Some(2.0),
        "high" => Some(3.0),
        "critical" => Some(4.0),
        _ => None,
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Threshold {
    /// Parses a threshold expression; the error says which part is wrong.
    pub fn parse(text: &str) -> Result<Threshold, String> {
        let mut clauses = Vec::new();
        for part in text.split(" and ") {
            let tokens: Vec<&str> = part.split_whitespace().collect();
            let [metric, op, value] = tokens.as_slice() else {
                return Err(format!("`{}` is not `metric OP value` (OP is one of == != >= <= > <)", part.trim()));
            };
            if !is_name(metric) {
                return Err(format!("`{metric}` is not a metric name (lower_snake_case)"));
            }
            let op = match *op {
                "==" => Op::Eq,
                "!=" => Op::Ne,
                ">=" => Op::Ge,
                "<=" => Op::Le,
                ">" => Op::Gt,
                "<" => Op::Lt,
                other => return Err(format!("`{other}` is not a comparison (== != >= <= > <)")),
            };
            let value = if let Ok(n) = value.parse::<f64>() {
                Operand::Number(n)
            } else if is_name(value) {
                Operand::Name((*value).to_string())
            } else {
                return Err(format!("`{value}` is neither a number nor a constant name"));
            };
            clauses.push(Clause { metric: (*metric).to_string(), op, value });
        }
        Ok(Threshold { clauses })
    }

    /// Evaluates every clause. A metric that was never measured fails its clause; an unknown
    /// constant fails too (validation catches both before a release starts).
    pub fn evaluate(&self, metrics: &BTreeMap<String, f64>, constants: &BTreeMap<String, f64>) -> Vec<ClauseResult> {
        self.clauses
            .iter()
            .map(|c| {
                let actual = metrics.get(&c.metric).copied();
                let bound = match &c.value {
                    Operand::Number(n) => Some(*n),
                    Operand::Name(n) => constants.get(n).copied().or_else(|| severity_value(n)),
                };
                let passed = match (actual, bound) {
                    (Some(a), Some(b)) => match c.op {
                        Op::Eq => (a - b).abs() < 1e-9,
                        Op::Ne => (a - b).abs() >= 1e-9,
                        Op::Ge => a >= b - 1e-9,
                        Op::Le => a <= b + 1e-9,
                        Op::Gt => a > b,
                        Op::Lt => a < b,
                    },
                    _ => false,
                };
                ClauseResult { text: c.to_string(), actual, passed }
            })
            .collect()
    }

    /// Metric names the threshold reads.
    pub fn metrics(&self) -> impl Iterator<Item = &str> {
        self.clauses.iter().map(|c| c.metric.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
    }

    #[test]
    fn seed_thresholds_evaluate() {
        let t = Threshold::parse("completeness_score == 1.0 and drift_severity <= low").unwrap();
        let ok = t.evaluate(&m(&[("completeness_score", 1.0), ("drift_severity", 1.0)]), &m(&[]));
        assert!(ok.iter().all(|c| c.passed));
        let bad = t.evaluate(&m(&[("completeness_score", 1.0), ("drift_severity", 2.0)]), &m(&[]));
        assert!(!bad[1].passed);

        let rto = Threshold::parse("recovery_seconds <= rto").unwrap();
        assert!(rto.evaluate(&m(&[("recovery_seconds", 9.5)]), &m(&[("rto", 10.0)]))[0].passed);
        assert!(!rto.evaluate(&m(&[("recovery_seconds", 10.5)]), &m(&[("rto", 10.0)]))[0].passed);
    }

    #[test]
    fn unmeasured_metric_fails() {
        let t = Threshold::parse("coverage >= 0.90").unwrap();
        let r = t.evaluate(&m(&[]), &m(&[]));
        assert_eq!(r[0].actual, None);
        assert!(!r[0].passed);
    }

    #[test]
    fn broken_expressions_name_the_part() {
        assert!(Threshold::parse("coverage => 0.9").unwrap_err().contains("=>"));
        assert!(Threshold::parse("coverage >= ").unwrap_err().contains("metric OP value"));
        assert!(Threshold::parse("Coverage >= 1").unwrap_err().contains("Coverage"));
        assert!(Threshold::parse("coverage >= 9%").unwrap_err().contains("9%"));
    }
}
