//! Helpers for reading mappings and scalars out of a [`yaml`](super::yaml) tree while
//! reporting, rather than stopping at, everything that is wrong.

use super::diagnostic::FileDiagnostics;
use super::yaml::{Node, Pos, ScalarKind, Value, scalar_kind};

/// The fields a kind of mapping may have, for reading it with [`Fields::read`].
pub struct Shape {
    /// The mapping's name in messages, e.g. "a registry entry".
    pub what: &'static str,
    /// Its fields, as listed in "expected …" messages.
    pub fields: &'static [&'static str],
    /// Deprecated fields: accepted, but not suggested.
    pub deprecated: &'static [&'static str],
    /// Fields that are not allowed here, each with the reason given instead of "unknown field".
    pub refused: &'static [(&'static str, &'static str)],
}

/// The known fields of one mapping, each with the node of its first occurrence.
pub struct Fields<'n> {
    /// Where the mapping starts.
    pub pos: Pos,
    found: Vec<(&'static str, &'n Node, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// Reads `node` as a mapping of the given shape.
    ///
    /// Unknown, refused and repeated keys are reported. Returns `None`, having reported nothing,
    /// when `node` is not a mapping: the caller knows what it expected and says so.
    pub fn read(node: &'n Node, shape: &Shape, d: &mut FileDiagnostics<'_>) -> Option<Self> {
        let Value::Map(entries) = &node.value else {
            return None;
        };
        let what = shape.what;
        let mut found: Vec<(&'static str, &'n Node, &'n Node)> = Vec::new();
        for (key, value) in entries {
            let Some(name) = scalar_text(key) else {
                let msg = format!(
                    "a key in {what} must be text, found {}",
                    key.value.describe()
                );
                d.error(key.pos, msg);
                continue;
            };
            let known = shape
                .fields
                .iter()
                .chain(shape.deprecated)
                .find(|a| **a == name);
            let Some(known) = known else {
                d.error(key.pos, unknown_field(name, shape));
                continue;
            };
            match found.iter().find(|(k, _, _)| k == known) {
                Some((_, first, _)) => d.error(
                    key.pos,
                    format!(
                        "`{name}` appears twice in {what} (first at line {})",
                        first.pos.line
                    ),
                ),
                None => found.push((known, key, value)),
            }
        }
        Some(Fields {
            pos: node.pos,
            found,
        })
    }

    /// The value of field `name`, if present.
    pub fn get(&self, name: &str) -> Option<&'n Node> {
        self.found
            .iter()
            .find(|(k, _, _)| *k == name)
            .map(|(_, _, v)| *v)
    }

    /// The key node of field `name`, if present (for positions).
    pub fn key(&self, name: &str) -> Option<&'n Node> {
        self.found
            .iter()
            .find(|(k, _, _)| *k == name)
            .map(|(_, k, _)| *k)
    }
}

/// "unknown field `x` in a registry entry; expected `name`, `src` or `service-account`", or the
/// shape's reason for refusing that field.
fn unknown_field(name: &str, shape: &Shape) -> String {
    if let Some((_, reason)) = shape.refused.iter().find(|(field, _)| *field == name) {
        return format!("`{name}` is not allowed in {}: {reason}", shape.what);
    }
    let quoted: Vec<String> = shape.fields.iter().map(|a| format!("`{a}`")).collect();
    let expected = match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    format!(
        "unknown field `{name}` in {}; expected {expected}",
        shape.what
    )
}
/// The text of a scalar node, whatever YAML type it would resolve to.
pub fn scalar_text(node: &Node) -> Option<&str> {
    match &node.value {
        Value::Scalar { text, .. } => Some(text),
        _ => None,
    }
}

/// The text of a node that must be a string; reports anything else as "`field` must be text".
pub fn text<'n>(node: &'n Node, field: &str, d: &mut FileDiagnostics<'_>) -> Option<&'n str> {
    match &node.value {
        Value::Scalar { text, plain } if scalar_kind(text, *plain) == ScalarKind::Text => {
            Some(text)
        }
        other => {
            d.error(
                node.pos,
                format!("`{field}` must be text, found {}", other.describe()),
            );
            None
        }
    }
}

/// The items of a node that must be a list; reports anything else with `expected`.
pub fn list<'n>(node: &'n Node, expected: &str, d: &mut FileDiagnostics<'_>) -> Option<&'n [Node]> {
    match &node.value {
        Value::Seq(items) => Some(items),
        other => {
            d.error(node.pos, format!("{expected}, found {}", other.describe()));
            None
        }
    }
}
