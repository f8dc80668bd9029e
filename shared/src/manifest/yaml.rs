//! A YAML document as a small tree whose every node knows its line and column.
//!
//! Manifests are validated by walking this tree rather than by deserializing with serde, so that
//! every problem in a file is reported at once, each at its own `LINE:COL`, in words a person
//! understands ("expected a list of tags, found a mapping") instead of the first serde error.
//! The tree is built from `saphyr-parser`'s spanned events.
//!
//! Three things a general YAML reader accepts are refused here, because a manifest never needs
//! them and a hostile file uses them:
//!
//! - nesting deeper than [`MAX_DEPTH`] lists and mappings: the tree is built from the event
//!   stream with an explicit stack, and the event that would open one level too many stops the
//!   parse, before a deep tree exists for recursive code (dropping, comparing, printing) to
//!   overflow the stack on;
//! - explicit tags (`!!int "10"`, `!!str true`, `!custom`): they would change what a value
//!   means, and silently ignoring them would read a different value than the author wrote.
//!   Each one is reported at its position; the tree is still built, so that every other
//!   problem of the file is reported too;
//! - more than [`MAX_LOOKAHEAD`] characters read ahead of the last complete event. The
//!   parser keeps every token of a flow collection (`[…]`, `{…}`) until its end, in case it
//!   turns out to be a mapping key, at about 200 bytes of memory per byte of input: a 20 MB
//!   `[a,a,…]` took 4 GB. The parser reads through a counting iterator, which ends the input
//!   once it runs that far ahead.

use std::borrow::Cow;
use std::cell::Cell;
use std::rc::Rc;

use saphyr_parser::{BufferedInput, Event, Parser, ScalarStyle, Span, Tag};

/// The deepest nesting of lists and mappings a file may have.
///
/// A manifest needs four levels (`images` → an image → its `dmap` → a list of tags); 64 leaves
/// generous room for any layout while keeping every recursive walk of the tree shallow.
pub const MAX_DEPTH: usize = 64;

/// The most characters the parser may read ahead of the last event it produced.
///
/// Real manifests write flow collections of a few dozen characters (`["v1.0", "latest"]`);
/// 64 Ki characters is a thousand times that, and bounds the parser's buffered tokens to a
/// dozen megabytes.
pub const MAX_LOOKAHEAD: usize = 64 * 1024;

/// A position in a file: 1-based line and 1-based column (in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub col: u32,
}

impl Pos {
    /// Where `span` starts.
    fn of(span: &Span) -> Pos {
        let line = u32::try_from(span.start.line()).unwrap_or(u32::MAX);
        let col = u32::try_from(span.start.col() + 1).unwrap_or(u32::MAX);
        Pos { line, col }
    }

    /// Where `span` ends.
    fn after(span: &Span) -> Pos {
        let line = u32::try_from(span.end.line()).unwrap_or(u32::MAX);
        let col = u32::try_from(span.end.col() + 1).unwrap_or(u32::MAX);
        Pos { line, col }
    }
}

/// One node of the tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node starts.
    pub pos: Pos,
    /// What the node is.
    pub value: Value,
}

/// The value of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar: its text and whether it was written plain (unquoted).
    Scalar {
        /// The scalar's text, after YAML escapes were resolved.
        text: String,
        /// True when written without quotes, so that YAML's type resolution applies.
        plain: bool,
    },
    /// A sequence (list).
    Seq(Vec<Node>),
    /// A mapping, in file order (duplicate keys kept, so that they can be reported).
    Map(Vec<(Node, Node)>),
    /// A `*alias`: manifests do not use anchors, and they are reported as an error.
    Alias,
}

/// What a scalar means under YAML 1.2's core schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    /// `null`, `~` or nothing at all.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer or a floating-point number.
    Number,
    /// Anything else, and every quoted scalar.
    Text,
}

/// A file that cannot be read as a manifest's YAML at all: a syntax error, a second document,
/// or nesting deeper than [`MAX_DEPTH`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where the parser stopped.
    pub pos: Pos,
    /// What is wrong, as a whole sentence (e.g. `YAML syntax error: …`).
    pub message: String,
}

/// A problem found while building the tree that does not stop it (an explicit tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where it is.
    pub pos: Pos,
    /// What is wrong, as a whole sentence.
    pub message: String,
}

/// A parsed file: its single document's tree, and the problems found on the way.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Document {
    /// The document's root; `None` for a file with no document (empty, or only comments).
    pub root: Option<Node>,
    /// Refused constructs (explicit tags), in file order; the tree is complete despite them.
    pub problems: Vec<Problem>,
}

impl Value {
    /// What kind of thing this is, in words, for messages: "a list", "a mapping", "the number 1.0".
    pub fn describe(&self) -> String {
        match self {
            Value::Seq(_) => "a list".to_owned(),
            Value::Map(_) => "a mapping".to_owned(),
            Value::Alias => {
                "an alias (`*name`; manifests do not support anchors and aliases: write the value out)"
                    .to_owned()
            }
            Value::Scalar { text, plain } => match scalar_kind(text, *plain) {
                ScalarKind::Null => "nothing (null)".to_owned(),
                ScalarKind::Bool(b) => format!("the boolean {b}"),
                ScalarKind::Number => format!("the number {text}"),
                ScalarKind::Text => format!("the text \"{text}\""),
            },
        }
    }

    /// True for an empty plain scalar, `~` or `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Scalar { text, plain } if scalar_kind(text, *plain) == ScalarKind::Null)
    }
}

/// Resolves a scalar's type the way YAML 1.2's core schema does.
pub fn scalar_kind(text: &str, plain: bool) -> ScalarKind {
    if !plain {
        return ScalarKind::Text;
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => ScalarKind::Null,
        "true" | "True" | "TRUE" => ScalarKind::Bool(true),
        "false" | "False" | "FALSE" => ScalarKind::Bool(false),
        _ if is_number(text) => ScalarKind::Number,
        _ => ScalarKind::Text,
    }
}

fn is_number(text: &str) -> bool {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(text, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let is_hex = unsigned
        .strip_prefix("0x")
        .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()));
    let is_octal = unsigned
        .strip_prefix("0o")
        .is_some_and(|o| !o.is_empty() && o.bytes().all(|b| (b'0'..=b'7').contains(&b)));
    is_hex || is_octal || is_decimal(unsigned)
}

/// `[0-9]*(\.[0-9]*)?([eE][-+]?[0-9]+)?` with at least one digit in the mantissa.
fn is_decimal(text: &str) -> bool {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

/// Parses `text` into its single document's tree.
///
/// A second document (`---`) and nesting deeper than [`MAX_DEPTH`] are errors: a manifest file
/// holds one document of a few levels. Explicit tags are reported in [`Document::problems`].
pub fn parse(text: &str) -> Result<Document, SyntaxError> {
    let meter = Rc::new(Lookahead::default());
    let chars = Metered {
        chars: text.chars(),
        meter: Rc::clone(&meter),
    };
    let mut builder = Builder::default();
    let mut last = Pos { line: 1, col: 1 };
    for event in Parser::new(BufferedInput::new(chars)) {
        // Whatever the parser made of a cut input, it is not the file.
        if meter.cut.get() {
            return Err(SyntaxError {
                pos: last,
                message: format!(
                    "more than {MAX_LOOKAHEAD} characters after this point without a complete \
                     YAML value (a value that long, or a list or mapping in [brackets] or \
                     {{braces}}, which the parser holds whole): refused; write long lists in \
                     block style, one `- item` per line"
                ),
            });
        }
        let (event, span) = event.map_err(|e| SyntaxError {
            pos: Pos {
                line: u32::try_from(e.marker().line()).unwrap_or(u32::MAX),
                col: u32::try_from(e.marker().col() + 1).unwrap_or(u32::MAX),
            },
            message: format!("YAML syntax error: {}", e.info()),
        })?;
        meter.allow_after(span.end.index());
        last = Pos::after(&span);
        builder.on_event(event, &span)?;
    }
    Ok(Document {
        root: builder.root,
        problems: builder.problems,
    })
}

/// How far the parser may read: shared by [`parse`] and the [`Metered`] characters.
#[derive(Default)]
struct Lookahead {
    /// Characters given to the parser.
    read: Cell<usize>,
    /// Characters it may have in all, now.
    limit: Cell<usize>,
    /// True once the input was ended early for reading too far ahead.
    cut: Cell<bool>,
}

impl Lookahead {
    /// Lets the parser read up to [`MAX_LOOKAHEAD`] characters past character `index`.
    fn allow_after(&self, index: usize) {
        self.limit.set(index.saturating_add(MAX_LOOKAHEAD));
    }
}

/// The text's characters, ending early once the parser reads too far ahead.
struct Metered<'t> {
    chars: std::str::Chars<'t>,
    meter: Rc<Lookahead>,
}

impl Iterator for Metered<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        let read = self.meter.read.get();
        if read >= self.meter.limit.get().max(MAX_LOOKAHEAD) {
            self.meter.cut.set(true);
            return None;
        }
        let c = self.chars.next()?;
        self.meter.read.set(read + 1);
        Some(c)
    }
}

/// Builds the tree from the event stream with a stack of open collections.
#[derive(Default)]
struct Builder {
    stack: Vec<Node>,
    /// Map keys waiting for their value, one slot per open mapping on the stack.
    pending_keys: Vec<Option<Node>>,
    root: Option<Node>,
    documents: u32,
    problems: Vec<Problem>,
}

impl Builder {
    fn on_event(&mut self, event: Event<'_>, span: &Span) -> Result<(), SyntaxError> {
        let pos = Pos::of(span);
        if let Some(tag) = tag_of(&event) {
            self.problems.push(Problem {
                pos,
                message: format!(
                    "explicit YAML tag `{}` is not accepted in manifests: remove it (quote text, write numbers and booleans plainly)",
                    tag_text(tag)
                ),
            });
        }
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(SyntaxError {
                        pos,
                        message: "YAML syntax error: a manifest file holds one YAML document, this is a second one"
                            .to_owned(),
                    });
                }
            }
            Event::Scalar(text, style, _, _) => {
                let plain = style == ScalarStyle::Plain;
                let value = Value::Scalar {
                    text: text.into_owned(),
                    plain,
                };
                self.add(Node { pos, value });
            }
            Event::Alias(_) => self.add(Node {
                pos,
                value: Value::Alias,
            }),
            Event::SequenceStart(..) => self.open(pos, Value::Seq(Vec::new()))?,
            Event::MappingStart(..) => self.open(pos, Value::Map(Vec::new()))?,
            Event::SequenceEnd | Event::MappingEnd => self.close(),
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        Ok(())
    }

    /// Opens a list or mapping, refusing one level deeper than [`MAX_DEPTH`].
    fn open(&mut self, pos: Pos, value: Value) -> Result<(), SyntaxError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(SyntaxError {
                pos,
                message: format!(
                    "lists and mappings nest deeper than {MAX_DEPTH} levels here (a manifest needs 4): refused"
                ),
            });
        }
        self.stack.push(Node { pos, value });
        self.pending_keys.push(None);
        Ok(())
    }

    fn close(&mut self) {
        self.pending_keys.pop();
        if let Some(node) = self.stack.pop() {
            self.add(node);
        }
    }

    fn add(&mut self, node: Node) {
        let Some(parent) = self.stack.last_mut() else {
            self.root = Some(node);
            return;
        };
        match &mut parent.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => {
                let slot = self.pending_keys.last_mut();
                match slot {
                    Some(slot) => match slot.take() {
                        Some(key) => entries.push((key, node)),
                        None => *slot = Some(node),
                    },
                    None => self.root = Some(node),
                }
            }
            Value::Scalar { .. } | Value::Alias => {}
        }
    }
}

/// The explicit tag an event carries, if any.
fn tag_of<'e>(event: &'e Event<'_>) -> Option<&'e Tag> {
    match event {
        Event::Scalar(_, _, _, tag)
        | Event::SequenceStart(_, tag)
        | Event::MappingStart(_, tag) => tag.as_ref().map(Cow::as_ref),
        _ => None,
    }
}

/// A tag as it is usually written: `!!int` for the core schema, `!name` for a local tag.
fn tag_text(tag: &Tag) -> String {
    if tag.is_yaml_core_schema() {
        format!("!!{}", tag.suffix)
    } else {
        format!("{}{}", tag.handle, tag.suffix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_tree_with_positions() {
        let root = parse("a:\n  - x\n  - \"1.0\"\nb: {c: 1}\n")
            .expect("parses")
            .root
            .expect("one document");
        let Value::Map(entries) = &root.value else {
            panic!("root is a map")
        };
        assert_eq!(entries.len(), 2);
        let (key, list) = &entries[0];
        assert_eq!(key.pos, Pos { line: 1, col: 1 });
        let Value::Seq(items) = &list.value else {
            panic!("a list")
        };
        assert_eq!(items[1].pos, Pos { line: 3, col: 5 });
        assert_eq!(items[1].value.describe(), "the text \"1.0\"");
        assert_eq!(entries[1].1.pos.line, 4);
    }

    #[test]
    fn resolves_core_schema_types() {
        assert_eq!(scalar_kind("1.0", true), ScalarKind::Number);
        assert_eq!(scalar_kind("1.0", false), ScalarKind::Text);
        assert_eq!(scalar_kind("-1e5", true), ScalarKind::Number);
        assert_eq!(scalar_kind("0x1F", true), ScalarKind::Number);
        assert_eq!(scalar_kind("v1.0", true), ScalarKind::Text);
        assert_eq!(scalar_kind("1.0.1", true), ScalarKind::Text);
        assert_eq!(scalar_kind("", true), ScalarKind::Null);
        assert_eq!(scalar_kind("True", true), ScalarKind::Bool(true));
        assert_eq!(scalar_kind("yes", true), ScalarKind::Text);
    }

    #[test]
    fn reports_syntax_errors_and_second_documents() {
        let err = parse("a: [1, 2\n").expect_err("unclosed flow sequence");
        assert_eq!(err.pos.line, 2);
        let err = parse("a: 1\n---\nb: 2\n").expect_err("two documents");
        assert_eq!(err.pos.line, 2);
        assert_eq!(parse("# only a comment\n").expect("parses").root, None);
    }

    #[test]
    fn refuses_nesting_deeper_than_the_limit() {
        // 50,000 levels (100 KB) used to overflow the stack when the tree was dropped.
        let block = format!("{}x\n", "- ".repeat(50_000));
        let err = parse(&block).expect_err("too deep");
        let col = u32::try_from(2 * MAX_DEPTH + 1).expect("small");
        assert_eq!(err.pos, Pos { line: 1, col });
        assert!(
            err.message.contains("deeper than 64 levels"),
            "{}",
            err.message
        );
        let flow = format!("a: {}", "[".repeat(50_000));
        let err = parse(&flow).expect_err("too deep");
        assert_eq!(err.pos.line, 1);
        // The limit itself is allowed.
        let deepest = format!("{}x\n", "- ".repeat(MAX_DEPTH));
        assert!(parse(&deepest).expect("at the limit").root.is_some());
    }

    #[test]
    fn refuses_to_read_far_ahead() {
        // The parser buffers a flow collection whole: 20 MB of `[a,a,…]` took 1.9 GB.
        let flat = format!("[{}]\n", ["a"; 200_000].join(","));
        let Err(err) = parse(&flat) else {
            panic!("a flow list of 400,000 characters is refused")
        };
        assert_eq!(err.pos, Pos { line: 1, col: 1 });
        assert!(err.message.contains("block style"), "{}", err.message);
        // The same items in block style are read, however many.
        let block = "- a\n".repeat(200_000);
        let doc = parse(&block).expect("a long block list");
        let items = match doc.root.map(|r| r.value) {
            Some(Value::Seq(items)) => items.len(),
            _ => 0,
        };
        assert_eq!(items, 200_000);
        // A flow list below the limit is read.
        let short = format!("[{}]\n", ["a"; 30_000].join(","));
        assert!(parse(&short).is_ok());
    }

    #[test]
    fn reports_every_explicit_tag_and_keeps_the_tree() {
        let doc = parse("a: !!int \"10\"\nb: !!str true\nc: !foo [x]\n!!str d: !!map {}\n")
            .expect("parses");
        let found: Vec<(u32, u32, &str)> = doc
            .problems
            .iter()
            .map(|p| {
                let tag = p.message.split('`').nth(1).unwrap_or_default();
                (p.pos.line, p.pos.col, tag)
            })
            .collect();
        assert_eq!(
            found,
            [
                (1, 4, "!!int"),
                (2, 4, "!!str"),
                (3, 4, "!foo"),
                (4, 1, "!!str"),
                (4, 10, "!!map")
            ]
        );
        let Some(Value::Map(entries)) = doc.root.map(|r| r.value) else {
            panic!("a map")
        };
        assert_eq!(entries.len(), 4);
    }
}
