//! A subscription's transformation: EventBridge's input transformer. Values picked from the
//! message by path (`inputPathsMap`) are put into a template (`inputTemplate`), and the result
//! is the payload delivered, signed as sent. The message, as the paths see it, is the filter's
//! document: `{"eventName", "messageId", "publishedAt", "payload"}`.
//!
//! Why this form: it is what teams that `sam deploy` know beside the event patterns of the
//! filter, and it is bounded by construction: no loops, no computation, an output no larger
//! than the template and the values it names (checked before it is built), evaluated in one
//! pass. In the template a placeholder `<name>` stands for its value as JSON, or, inside a JSON
//! string, for its text (a string without its quotes). A path that finds nothing gives `null`
//! (an empty text inside a string).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The longest template kept, and the most paths it may name.
pub const MAX_TEMPLATE_BYTES: usize = 8 * 1024;
pub const MAX_PATHS: usize = 100;

/// A checked transformation, as set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transformation {
    pub input_paths_map: BTreeMap<String, String>,
    pub input_template: String,
}

/// One step of a path: a field, or an array element.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
}

/// A template, split once: text, and placeholders (which path, and whether inside a string).
#[derive(Debug, Clone)]
pub struct CompiledTransformation {
    parts: Vec<Part>,
    paths: BTreeMap<String, Vec<Step>>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Value { name: String, in_string: bool },
}

impl Transformation {
    /// A transformation from `{inputPathsMap, inputTemplate}` (or a string holding it, as a
    /// text field sends it), checked as it will run: every path readable, every placeholder
    /// named in the map, and the template JSON once its placeholders are filled (the error
    /// gives the line and column in the template).
    pub fn parse(given: &Value) -> Result<Transformation, String> {
        if let Value::String(text) = given {
            let value: Value = serde_json::from_str(text)
                .map_err(|e| format!("is not JSON: {e} (line {}, column {})", e.line(), e.column()))?;
            return Transformation::parse(&value);
        }
        let Value::Object(fields) = given else {
            return Err("must be an object {inputPathsMap, inputTemplate}".into());
        };
        if let Some(unknown) = fields.keys().find(|k| *k != "inputPathsMap" && *k != "inputTemplate") {
            return Err(format!("has no field {unknown:?}: it takes inputPathsMap and inputTemplate"));
        }
        let input_template = match fields.get("inputTemplate") {
            Some(Value::String(template)) => template.clone(),
            _ => return Err("needs inputTemplate, a string".into()),
        };
        let input_paths_map = match fields.get("inputPathsMap") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(name, path)| match path {
                    Value::String(path) => Ok((name.clone(), path.clone())),
                    _ => Err(format!("inputPathsMap.{name} must be a path such as \"$.payload.amount\"")),
                })
                .collect::<Result<_, String>>()?,
            Some(_) => return Err("inputPathsMap must be an object of names and paths".into()),
        };
        let transformation = Transformation { input_paths_map, input_template };
        transformation.compile()?;
        Ok(transformation)
    }

    /// The template split and its paths read: what runs for each delivery.
    pub fn compile(&self) -> Result<CompiledTransformation, String> {
        if self.input_template.len() > MAX_TEMPLATE_BYTES {
            return Err(format!("inputTemplate is {} bytes; at most {MAX_TEMPLATE_BYTES}", self.input_template.len()));
        }
        if self.input_paths_map.len() > MAX_PATHS {
            return Err(format!("inputPathsMap names {} paths; at most {MAX_PATHS}", self.input_paths_map.len()));
        }
        let mut paths = BTreeMap::new();
        for (name, path) in &self.input_paths_map {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(format!("inputPathsMap name {name:?} must be letters, digits, _ or -"));
            }
            paths.insert(name.clone(), parse_path(path).map_err(|why| format!("inputPathsMap.{name}: {why}"))?);
        }
        let parts = split(&self.input_template, &paths)?;
        // The template must make JSON whatever the values: checked with each placeholder
        // filled by a stand-in of its own length, so an error's column is the template's.
        let mut stand_in = String::with_capacity(self.input_template.len());
        for part in &parts {
            match part {
                Part::Text(text) => stand_in.push_str(text),
                Part::Value { name, in_string } => {
                    let width = name.len() + 2;
                    if *in_string {
                        stand_in.push_str(&"x".repeat(width));
                    } else {
                        // A value as short as any placeholder (`<a>` is three characters).
                        stand_in.push('0');
                        stand_in.push_str(&" ".repeat(width - 1));
                    }
                }
            }
        }
        serde_json::from_str::<serde::de::IgnoredAny>(&stand_in).map_err(|e| {
            format!("inputTemplate does not make JSON: {e} (line {}, column {} of the template)", e.line(), e.column())
        })?;
        Ok(CompiledTransformation { parts, paths })
    }
}

impl CompiledTransformation {
    /// The payload this transformation makes of `message` (the filter's document, parsed), or
    /// why it cannot: an output over `limit` bytes (the payload limit) is refused before it is
    /// built.
    pub fn apply(&self, message: &Value, limit: usize) -> Result<String, String> {
        let values: BTreeMap<&str, Option<&Value>> =
            self.paths.iter().map(|(name, path)| (name.as_str(), find(message, path))).collect();
        let rendered = |name: &str, in_string: bool| -> String {
            match (values.get(name).copied().flatten(), in_string) {
                (None, false) => "null".to_owned(),
                (None, true) => String::new(),
                (Some(Value::String(text)), true) => escape_in_string(text),
                (Some(value), true) => escape_in_string(&value.to_string()),
                (Some(value), false) => value.to_string(),
            }
        };
        // Measured before it is built: the template's text and each value's size.
        let mut size = 0usize;
        for part in &self.parts {
            size += match part {
                Part::Text(text) => text.len(),
                Part::Value { name, .. } => values.get(name.as_str()).copied().flatten().map_or(4, estimate),
            };
        }
        if size > limit * 2 {
            return Err(format!("its output would be about {size} bytes; a payload is at most {limit}"));
        }
        let mut out = String::with_capacity(size);
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Value { name, in_string } => out.push_str(&rendered(name, *in_string)),
            }
        }
        if out.len() > limit {
            return Err(format!("its output is {} bytes; a payload is at most {limit}", out.len()));
        }
        serde_json::from_str::<serde::de::IgnoredAny>(&out).map_err(|e| format!("its output is not JSON: {e}"))?;
        Ok(out)
    }
}

/// The message a transformation reads: the filter's document, with when it was published.
pub fn document(event_name: &str, message_id: &str, published_at: &str, payload: &str) -> Result<Value, String> {
    let payload: Value = serde_json::from_str(payload).map_err(|e| format!("the payload is not JSON: {e}"))?;
    Ok(serde_json::json!({
        "eventName": event_name,
        "messageId": message_id,
        "publishedAt": published_at,
        "payload": payload,
    }))
}

/// A value's size as JSON, at most (strings may grow by their escapes).
fn estimate(value: &Value) -> usize {
    match value {
        Value::String(text) => text.len() * 2 + 2,
        Value::Array(items) => 2 + items.iter().map(|v| estimate(v) + 1).sum::<usize>(),
        Value::Object(map) => 2 + map.iter().map(|(k, v)| k.len() * 2 + 4 + estimate(v)).sum::<usize>(),
        other => other.to_string().len(),
    }
}

/// `text` as it goes between a JSON string's quotes.
fn escape_in_string(text: &str) -> String {
    let quoted = Value::String(text.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// `$`, `$.a.b`, `$.items[0].name`, `$['odd key']`.
fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let rest = path.strip_prefix('$').ok_or_else(|| format!("{path:?} must start with $"))?;
    let (mut steps, mut chars) = (Vec::new(), rest.char_indices().peekable());
    while let Some((at, c)) = chars.next() {
        match c {
            '.' => {
                let mut name = String::new();
                while let Some((_, c)) = chars.peek().copied().filter(|(_, c)| *c != '.' && *c != '[') {
                    name.push(c);
                    chars.next();
                }
                if name.is_empty() {
                    return Err(format!("{path:?} has an empty name at character {}", at + 2));
                }
                steps.push(Step::Field(name));
            }
            '[' => {
                let mut inner = String::new();
                loop {
                    match chars.next() {
                        Some((_, ']')) if !inner.starts_with('\'') || (inner.len() > 1 && inner.ends_with('\'')) => {
                            break
                        }
                        Some((_, c)) => inner.push(c),
                        None => return Err(format!("{path:?} has a [ without its ] at character {}", at + 2)),
                    }
                }
                if let Some(quoted) = inner.strip_prefix('\'').and_then(|i| i.strip_suffix('\'')) {
                    steps.push(Step::Field(quoted.to_owned()));
                } else {
                    let index = inner
                        .parse()
                        .map_err(|_| format!("{path:?}: [{inner}] is neither an index nor a quoted name"))?;
                    steps.push(Step::Index(index));
                }
            }
            _ => return Err(format!("{path:?}: unexpected {c:?} at character {}", at + 2)),
        }
    }
    Ok(steps)
}

fn find<'v>(mut value: &'v Value, path: &[Step]) -> Option<&'v Value> {
    for step in path {
        value = match (step, value) {
            (Step::Field(name), Value::Object(map)) => map.get(name)?,
            (Step::Index(i), Value::Array(items)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

/// The template in parts, each placeholder known and marked when it sits inside a string.
fn split(template: &str, paths: &BTreeMap<String, Vec<Step>>) -> Result<Vec<Part>, String> {
    let (mut parts, mut text, mut in_string, mut escaped) = (Vec::new(), String::new(), false, false);
    let mut chars = template.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c == '<' {
            let name: String = template[at + 1..].chars().take_while(|c| *c != '>').collect();
            let closed = template[at + 1 + name.len()..].starts_with('>');
            let is_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if closed && is_name {
                if !paths.contains_key(&name) {
                    let (line, column) = position(template, at);
                    return Err(format!(
                        "inputTemplate names <{name}> (line {line}, column {column}), which inputPathsMap does not"
                    ));
                }
                parts.push(Part::Text(std::mem::take(&mut text)));
                parts.push(Part::Value { name: name.clone(), in_string });
                for _ in 0..name.len() + 1 {
                    chars.next();
                }
                escaped = false;
                continue;
            }
        }
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        }
        text.push(c);
    }
    parts.push(Part::Text(text));
    Ok(parts)
}

/// The line and column (from 1) of byte `at` in `text`.
fn position(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The payload limit (`message::MAX_PAYLOAD_BYTES`).
    const LIMIT: usize = 256 * 1024;

    fn transformation(paths: Value, template: &str) -> Result<Transformation, String> {
        Transformation::parse(&json!({"inputPathsMap": paths, "inputTemplate": template}))
    }

    fn message(payload: Value) -> Value {
        document("PurchaseCreated", "m-1", "2026-12-07T08:00:00Z", &payload.to_string()).unwrap()
    }

    #[test]
    fn values_are_picked_by_path_and_put_in_the_template_as_json_or_as_text() {
        let t = transformation(
            json!({"total": "$.payload.amount", "store": "$.payload.store.name", "first": "$.payload.lines[0]",
                   "event": "$.eventName", "missing": "$.payload.nothing", "odd": "$.payload['odd key']"}),
            r#"{"total": <total>, "label": "<event> at <store>", "line": <first>, "none": <missing>, "empty": "<missing>", "odd": <odd>}"#,
        )
        .unwrap();
        let payload =
            json!({"amount": 250, "store": {"name": "North \"1\""}, "lines": [{"sku": "A"}], "odd key": true});
        let out = t.compile().unwrap().apply(&message(payload), LIMIT).unwrap();
        let out: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            out,
            json!({"total": 250, "label": "PurchaseCreated at North \"1\"", "line": {"sku": "A"}, "none": null,
                   "empty": "", "odd": true})
        );
        let whole = transformation(json!({"all": "$"}), "<all>").unwrap().compile().unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&whole.apply(&message(json!({"a": 1})), LIMIT).unwrap()).unwrap()["payload"],
            json!({"a": 1})
        );
    }

    #[test]
    fn a_bad_transformation_says_what_and_where() {
        let err = transformation(json!({"a": "$.payload.a"}), "{\"a\": <a>,\n \"b\": }").unwrap_err();
        assert!(err.contains("line 2, column"), "{err}");
        let err = transformation(json!({}), r#"{"a": <a>}"#).unwrap_err();
        assert!(err.contains("<a> (line 1, column 7)"), "{err}");
        assert!(transformation(json!({"a": "payload.a"}), "<a>").unwrap_err().contains("must start with $"));
        assert!(transformation(json!({"a": "$.payload[x]"}), "<a>").unwrap_err().contains("neither an index"));
        assert!(transformation(json!({"a b": "$"}), "1").unwrap_err().contains("letters, digits"));
        assert!(Transformation::parse(&json!({"inputTemplate": 5})).unwrap_err().contains("inputTemplate"));
        assert!(Transformation::parse(&json!({"template": "1"})).unwrap_err().contains("\"template\""));
        assert!(Transformation::parse(&json!(["x"])).unwrap_err().contains("object"));
        assert!(Transformation::parse(&json!("x")).unwrap_err().contains("is not JSON: "), "a string holds JSON");
        let long = format!("\"{}\"", "x".repeat(MAX_TEMPLATE_BYTES));
        assert!(transformation(json!({}), &long).unwrap_err().contains("at most"));
    }

    #[test]
    fn an_output_over_the_payload_limit_is_refused_before_it_is_built() {
        let many = (0..50).map(|_| "<all>").collect::<Vec<_>>().join(",");
        let t = transformation(json!({"all": "$.payload"}), &format!("[{many}]")).unwrap().compile().unwrap();
        let big = json!({"text": "x".repeat(20_000)});
        let err = t.apply(&message(big), LIMIT).unwrap_err();
        assert!(err.contains("a payload is at most"), "{err}");
        assert!(t.apply(&message(json!({"text": "small"})), LIMIT).is_ok());
    }
}
