//! `docs/configuration.md`, the configuration reference, is generated from the code: every
//! option of `Settings` with its built-in default and environment variable, and its meaning
//! from the comments of `config/vitrina.toml` (whose values a lib test checks against the
//! defaults). This test fails when the document is stale or an option is undocumented;
//! `VITRINA_BLESS=1 cargo test --test it config_reference` rewrites the document.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;
use vitrina::config::Settings;

const SHIPPED: &str = include_str!("../../config/vitrina.toml");
const REFERENCE: &str = "docs/configuration.md";

/// What `config/vitrina.toml` says, in its order: per section, paragraphs of free comments and
/// the keys with their trailing comments.
#[derive(Default)]
struct Section {
    name: String,
    items: Vec<Item>,
}

enum Item {
    Note(String),
    Key { name: String, meaning: String },
}

fn parse_shipped() -> Vec<Section> {
    let mut sections = vec![Section::default()];
    let mut note: Vec<String> = Vec::new();
    let mut last_was_key = false;
    let flush = |note: &mut Vec<String>, section: &mut Section| {
        if !note.is_empty() {
            section.items.push(Item::Note(note.join(" ")));
            note.clear();
        }
    };
    for line in SHIPPED.lines() {
        let trimmed = line.trim();
        let section = sections.last_mut().expect("a section");
        if trimmed.is_empty() {
            flush(&mut note, section);
            last_was_key = false;
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            flush(&mut note, section);
            sections.push(Section { name: name.to_string(), items: Vec::new() });
            last_was_key = false;
            continue;
        }
        let (commented, body) = match trimmed.strip_prefix('#') {
            Some(rest) => (true, rest.trim()),
            None => (false, trimmed),
        };
        if let Some((name, mut meaning)) = key_line(body) {
            // Comment lines right above a key without a comment of its own are about that key.
            if meaning.is_empty() && !note.is_empty() {
                meaning = note.join(" ");
                note.clear();
            }
            flush(&mut note, section);
            section.items.push(Item::Key { name, meaning });
            last_was_key = true;
            continue;
        }
        // An indented comment under a key (`    # …` or `#    # …`) continues that key's comment.
        if commented && last_was_key && (line.starts_with(' ') || body.starts_with('#')) {
            if let Some(Item::Key { meaning, .. }) = section.items.last_mut() {
                meaning.push(' ');
                meaning.push_str(body.trim_start_matches('#').trim());
            }
            continue;
        }
        last_was_key = false;
        note.push(body.to_string());
    }
    let section = sections.last_mut().expect("a section");
    flush(&mut note, section);
    // The file's own header (before the first key) says how to configure, not what: left out.
    if let Some(first) = sections.first_mut() {
        if matches!(first.items.first(), Some(Item::Note(_))) {
            first.items.remove(0);
        }
    }
    sections
}

/// `name = value   # meaning` → (name, meaning); `None` for anything else.
fn key_line(body: &str) -> Option<(String, String)> {
    let (name, rest) = body.split_once(" = ")?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return None;
    }
    // The comment starts at the first " #" outside a quoted string.
    let mut quoted = false;
    let mut meaning = String::new();
    let bytes: Vec<char> = rest.chars().collect();
    for (i, c) in bytes.iter().enumerate() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted && (i == 0 || bytes[i - 1] == ' ') => {
                meaning = bytes[i + 1..].iter().collect::<String>().trim().to_string();
                break;
            }
            _ => {}
        }
    }
    Some((name.to_string(), meaning))
}

/// Every leaf option of the defaults: dotted path → value.
fn defaults() -> BTreeMap<String, Value> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&path, v, out);
                }
            }
            leaf => {
                out.insert(prefix.to_string(), leaf.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", &serde_json::to_value(Settings::default()).expect("settings serialise"), &mut out);
    out
}

fn env_var(path: &str) -> String {
    format!("VITRINA_{}", path.replace('.', "__").to_uppercase())
}

fn shown(value: &Value) -> String {
    match value {
        Value::Null => "unset".to_string(),
        Value::String(s) if s.is_empty() => "`\"\"`".to_string(),
        other => format!("`{}`", other.to_string().replace('|', "\\|")),
    }
}

fn render(sections: &[Section], defaults: &BTreeMap<String, Value>) -> (String, Vec<String>) {
    let mut problems = Vec::new();
    let mut documented = std::collections::BTreeSet::new();
    let mut doc = String::from(
        "# Configuration reference\n\n\
         Generated from the code by `tests/it/config_reference.rs` (`VITRINA_BLESS=1 cargo test --test it \
         config_reference` rewrites it): every option with its built-in default, its environment variable \
         and what it means (from `config/vitrina.toml`).\n\n\
         Sources, each overriding the one before: built-in defaults ← the TOML file (`--config`, default \
         `config/vitrina.toml`) ← `VITRINA_*` environment variables (nested keys joined with `__`) ← \
         command-line flags (`--listen`, `--data-dir`, ...). A list in the environment is comma-separated, \
         e.g. `VITRINA_EGRESS__ALLOW=127.0.0.0/8,10.0.0.0/8`.\n",
    );
    for section in sections {
        let title = if section.name.is_empty() { "Top level".to_string() } else { format!("`[{}]`", section.name) };
        let _ = write!(doc, "\n## {title}\n");
        let mut in_table = false;
        for item in &section.items {
            match item {
                Item::Note(text) => {
                    let _ = write!(doc, "\n{text}\n");
                    in_table = false;
                }
                Item::Key { name, meaning } => {
                    let path = if section.name.is_empty() { name.clone() } else { format!("{}.{name}", section.name) };
                    let Some(default) = defaults.get(&path) else {
                        problems.push(format!("config/vitrina.toml documents `{path}`, which Settings does not have"));
                        continue;
                    };
                    documented.insert(path.clone());
                    if meaning.is_empty() {
                        problems.push(format!("`{path}` has no comment in config/vitrina.toml saying what it does"));
                    }
                    if !in_table {
                        doc.push_str("\n| Option | Default | Environment | Meaning |\n|---|---|---|---|\n");
                        in_table = true;
                    }
                    let _ = writeln!(doc, "| `{path}` | {} | `{}` | {} |", shown(default), env_var(&path), meaning.replace('|', "\\|"));
                }
            }
        }
    }
    for path in defaults.keys().filter(|p| !documented.contains(*p)) {
        problems.push(format!(
            "`{path}` is not in config/vitrina.toml: add it (commented out if it has no default) with a comment saying what it does"
        ));
    }
    (doc, problems)
}

#[test]
fn the_configuration_reference_documents_every_option_as_the_code_has_it() {
    let (doc, problems) = render(&parse_shipped(), &defaults());
    assert!(problems.is_empty(), "configuration reference problems:\n{}", problems.join("\n"));
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(REFERENCE);
    if std::env::var_os("VITRINA_BLESS").is_some() {
        std::fs::write(&path, &doc).expect("write the reference");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == doc, "{REFERENCE} is stale: run `VITRINA_BLESS=1 cargo test --test it config_reference` and commit the result");
}
