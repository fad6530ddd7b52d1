//! The metric names Grafana dashboards and Prometheus rules refer to, read from their files, so
//! a test can check each against what the processes really export.

use std::collections::BTreeSet;
use std::path::Path;

/// PromQL words that are not metric names.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

/// Metric names in one PromQL expression: identifiers outside label matchers, strings, range
/// selectors and grouping clauses, not followed by `(` (functions) and not keywords.
pub fn metrics_in(expr: &str) -> BTreeSet<String> {
    let mut cleaned = String::new();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    let mut in_string: Option<char> = None;
    for c in expr.chars() {
        if let Some(q) = in_string {
            if c == q {
                in_string = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => in_string = Some(c),
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            _ if depth_brace > 0 || depth_bracket > 0 => {}
            _ => cleaned.push(c),
        }
        if matches!(c, '{' | '}' | '[' | ']') {
            cleaned.push(' ');
        }
    }
    // Grouping clauses name labels, not metrics.
    let mut out = BTreeSet::new();
    let chars: Vec<char> = cleaned.chars().collect();
    let mut i = 0;
    let mut skip_group = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if matches!(
                word.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            ) {
                skip_group = next == Some(&'(');
                continue;
            }
            if next == Some(&'(') || KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                continue;
            }
            if start > 0 && chars[start - 1] == '$' {
                continue;
            }
            out.insert(word);
        } else if c == '(' && skip_group {
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            skip_group = false;
            i += 1;
        } else {
            i += 1;
        }
    }
    out
}

/// Every metric referenced by `dir/dashboards/*.json` (each panel target's `expr`) and
/// `dir/rules/*.yaml` (PrometheusRule `spec.groups[].rules[].expr`); an error names a file
/// that does not parse or holds no expression.
pub fn referenced_metrics(dir: &Path) -> Result<BTreeSet<String>, String> {
    let mut all = BTreeSet::new();
    for (sub, ext) in [("dashboards", "json"), ("rules", "yaml")] {
        let entries = std::fs::read_dir(dir.join(sub)).map_err(|e| format!("{sub}: {e}"))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.extension().and_then(|e| e.to_str()) != Some(ext) {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            let value: serde_json::Value = if ext == "json" {
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            } else {
                let yaml: serde_yaml::Value =
                    serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                serde_json::to_value(yaml).map_err(|e| e.to_string())?
            };
            let mut exprs = Vec::new();
            collect_exprs(&value, &mut exprs);
            if exprs.is_empty() {
                return Err(format!("{}: no expressions", path.display()));
            }
            for expr in exprs {
                all.extend(metrics_in(&expr));
            }
        }
    }
    Ok(all)
}

fn collect_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_metric_names_only() {
        let found = metrics_in(
            r#"sum by (subgraph) (rate(switchyard_subgraph_requests_total{outcome="error", subgraph=~"$subgraph"}[$__rate_interval])) / on(subgraph) group_left sum by (subgraph) (rate(switchyard_subgraph_requests_total[5m])) > 0.05 * 14.4"#,
        );
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            vec!["switchyard_subgraph_requests_total"]
        );
        let found = metrics_in("max by (shard) (x_seconds) > 30 and sum without (a) (y) > 1");
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            vec!["x_seconds", "y"]
        );
        let found =
            metrics_in("histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m]))) or vector(0)");
        assert_eq!(found.into_iter().collect::<Vec<_>>(), vec!["a_bucket"]);
    }
}
