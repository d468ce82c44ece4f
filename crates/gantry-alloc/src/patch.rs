//! `gantry recommend --write`: sets steps' `resources.cpu`/`resources.memory` in the spec's
//! text, keeping its comments and layout, and proves the edit by parsing the result: it must
//! be the same pipeline with only those values changed, or nothing is written.

use std::path::Path;

use gantry_spec::Pipeline;

use crate::recommend::{fmt_cpu, fmt_memory};

/// New requests for one declared step (`None`: leave as is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub step: String,
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
}

/// The spec text with every change applied.
pub fn apply(
    label: &str,
    base_dir: &Path,
    text: &str,
    changes: &[Change],
) -> Result<String, String> {
    let original = gantry_spec::parse(label, base_dir, text)
        .map_err(|e| format!("the spec does not parse: {e}"))?;
    let mut out = text.to_string();
    for change in changes {
        // Re-parse after each edit: line numbers move when a line is inserted.
        let current = gantry_spec::parse(label, base_dir, &out)
            .map_err(|e| format!("internal: an edit broke the spec: {e}"))?;
        let step = current
            .steps
            .iter()
            .find(|s| s.name == change.step)
            .ok_or_else(|| format!("no step `{}` in {label}", change.step))?;
        out = edit_step(&out, step.location.line, step.location.column, change)
            .map_err(|e| format!("step `{}`: {e}; set its resources by hand", change.step))?;
    }
    let patched = gantry_spec::parse(label, base_dir, &out)
        .map_err(|e| format!("internal: the edited spec does not parse: {e}"))?;
    verify(&original, &patched, changes)?;
    Ok(out)
}

/// Only the asked values changed.
fn verify(original: &Pipeline, patched: &Pipeline, changes: &[Change]) -> Result<(), String> {
    let mut expected = original.clone();
    for (e, p) in expected.steps.iter_mut().zip(&patched.steps) {
        e.location = p.location.clone();
        if let Some(c) = changes.iter().find(|c| c.step == e.name) {
            if let Some(cpu) = c.cpu_millis {
                e.resources.cpu_millis = cpu;
            }
            if let Some(m) = c.memory_bytes {
                e.resources.memory_bytes = m;
            }
        }
    }
    if &expected != patched {
        return Err("internal: the edit changed more than the resources; nothing written".into());
    }
    Ok(())
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Where a line's content ends: before a ` #` comment (outside quotes, roughly).
fn content_end(line: &str) -> usize {
    let bytes = line.as_bytes();
    let (mut single, mut double) = (false, false);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            b'#' if !single && !double && (i == 0 || bytes[i - 1] == b' ') => {
                return line[..i].trim_end().len();
            }
            _ => {}
        }
    }
    line.trim_end().len()
}

fn values(change: &Change) -> Vec<(&'static str, String)> {
    let mut v = Vec::new();
    if let Some(c) = change.cpu_millis {
        v.push(("cpu", fmt_cpu(c)));
    }
    if let Some(m) = change.memory_bytes {
        v.push(("memory", fmt_memory(m)));
    }
    v
}

/// Sets `key: value` inside a one-line flow mapping `{ … }` that starts at `open`.
fn edit_flow(line: &str, open: usize, sets: &[(&'static str, String)]) -> Result<String, String> {
    let close = matching_brace(line, open).ok_or("a flow mapping that spans lines")?;
    let mut inner = line[open + 1..close].to_string();
    for (key, value) in sets {
        let mut found = false;
        let mut parts: Vec<String> = split_top(&inner)
            .into_iter()
            .map(|part| {
                let trimmed = part.trim_start();
                let lead = &part[..part.len() - trimmed.len()];
                match trimmed.split_once(':') {
                    Some((k, rest)) if k.trim() == *key => {
                        found = true;
                        let trail = &rest[rest.trim_end().len()..];
                        format!("{lead}{k}: {value}{trail}")
                    }
                    _ => part.to_string(),
                }
            })
            .collect();
        if !found {
            let trimmed_empty = parts.iter().all(|p| p.trim().is_empty());
            if trimmed_empty {
                parts = vec![format!(" {key}: {value} ")];
            } else {
                let last = parts.pop().unwrap_or_default();
                let body = last.trim_end();
                let trail = &last[body.len()..];
                parts.push(body.to_string());
                parts.push(format!(" {key}: {value}{trail}"));
            }
        }
        inner = parts.join(",");
    }
    Ok(format!(
        "{}{{{}}}{}",
        &line[..open],
        inner,
        &line[close + 1..]
    ))
}

fn matching_brace(line: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in line[open..].char_indices() {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(open + i);
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits on commas not inside nested brackets.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Finds `key:` at the top level of a flow mapping body and returns where its value starts.
fn flow_key(line: &str, open: usize, key: &str) -> Option<usize> {
    let close = matching_brace(line, open)?;
    let mut offset = open + 1;
    for part in split_top(&line[open + 1..close]) {
        let trimmed = part.trim_start();
        if let Some((k, _)) = trimmed.split_once(':')
            && k.trim() == key
        {
            let at = offset + (part.len() - trimmed.len()) + k.len() + 1;
            return Some(at + (line[at..].len() - line[at..].trim_start().len()));
        }
        offset += part.len() + 1;
    }
    None
}

fn edit_step(text: &str, line_no: usize, column: usize, change: &Change) -> Result<String, String> {
    let sets = values(change);
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let first = line_no
        .checked_sub(1)
        .filter(|i| *i < lines.len())
        .ok_or("no such line")?;
    let col = column.saturating_sub(1);
    let head = &lines[first];
    if head[col.min(head.len())..].starts_with('{') {
        // `- { name: s, image: x, resources: { … } }` on one line.
        let line = lines[first].clone();
        lines[first] = match flow_key(&line, col, "resources") {
            Some(at) if line[at..].starts_with('{') => edit_flow(&line, at, &sets)?,
            Some(_) => return Err("`resources` is not a `{ … }` mapping".into()),
            None => edit_flow_insert(&line, col, &format!("resources: {}", flow_body(&sets)))?,
        };
        return Ok(join(&lines, newline, text));
    }
    // A block mapping: its keys at `col`, nested lines deeper, until a line at `col` or less
    // that is not one of its keys.
    let key_indent = col;
    let mut end = first + 1;
    let mut resources = None;
    if lines[first][col..].trim_start().starts_with("resources:") {
        resources = Some(first);
    }
    while end < lines.len() {
        let l = &lines[end];
        let blank = l.trim().is_empty() || l.trim_start().starts_with('#');
        if !blank {
            let ind = indent_of(l);
            if ind < key_indent || (ind == key_indent && l.trim_start().starts_with("- ")) {
                break;
            }
            if ind == key_indent && l.trim_start().starts_with("resources:") {
                resources = Some(end);
            }
        }
        end += 1;
    }
    // Trailing blank or comment lines belong to what follows.
    while end > first + 1 && {
        let l = lines[end - 1].trim();
        l.is_empty() || l.starts_with('#')
    } {
        end -= 1;
    }
    match resources {
        None => lines.insert(
            end,
            format!("{}resources: {}", " ".repeat(key_indent), flow_body(&sets)),
        ),
        Some(r) => {
            let line = lines[r].clone();
            let at =
                line.find("resources:").ok_or("internal: resources line")? + "resources:".len();
            let rest = &line[at..content_end(&line).max(at)];
            if let Some(open) = rest.find('{') {
                lines[r] = edit_flow(&line, at + open, &sets)?;
            } else if !rest.trim().is_empty() {
                return Err("`resources` is not a mapping".into());
            } else {
                // Block children: deeper lines right after it.
                let mut child_indent = None;
                let mut last_child = r;
                let mut i = r + 1;
                while i < end {
                    let l = &lines[i];
                    let blank = l.trim().is_empty() || l.trim_start().starts_with('#');
                    if !blank {
                        if indent_of(l) <= key_indent {
                            break;
                        }
                        child_indent.get_or_insert(indent_of(l));
                        last_child = i;
                    }
                    i += 1;
                }
                let child_indent = child_indent.unwrap_or(key_indent + 2);
                for (key, value) in &sets {
                    let found = (r + 1..=last_child).find(|&i| {
                        indent_of(&lines[i]) == child_indent
                            && lines[i].trim_start().split_once(':').map(|(k, _)| k.trim())
                                == Some(*key)
                    });
                    match found {
                        Some(i) => {
                            let l = lines[i].clone();
                            let colon = l.find(':').ok_or("internal: key line")?;
                            let end_of_value = content_end(&l).max(colon + 1);
                            lines[i] = format!("{}: {value}{}", &l[..colon], &l[end_of_value..]);
                        }
                        None => {
                            last_child += 1;
                            lines.insert(
                                last_child,
                                format!("{}{key}: {value}", " ".repeat(child_indent)),
                            );
                        }
                    }
                }
            }
        }
    }
    Ok(join(&lines, newline, text))
}

/// `{ cpu: 1, memory: 2Gi }`.
fn flow_body(sets: &[(&'static str, String)]) -> String {
    let body: Vec<String> = sets.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{ {} }}", body.join(", "))
}

fn edit_flow_insert(line: &str, open: usize, entry: &str) -> Result<String, String> {
    let close = matching_brace(line, open).ok_or("a flow mapping that spans lines")?;
    let body = line[open + 1..close].trim_end();
    let trail = &line[open + 1 + body.len()..close];
    Ok(format!(
        "{}{{{}, {entry}{}}}{}",
        &line[..open],
        body,
        if trail.is_empty() { "" } else { trail },
        &line[close + 1..]
    ))
}

fn join(lines: &[String], newline: &str, original: &str) -> String {
    let mut out = lines.join(newline);
    if original.ends_with('\n') {
        out.push_str(newline);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn change(step: &str, cpu: Option<u64>, mem: Option<u64>) -> Change {
        Change {
            step: step.into(),
            cpu_millis: cpu,
            memory_bytes: mem,
        }
    }

    fn patch(text: &str, changes: &[Change]) -> String {
        apply("p.yaml", Path::new("."), text, changes).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn block_resources_keep_comments_and_layout() {
        let text = "\
# Training pipeline
name: p
steps:
  - name: prep   # first
    image: busybox
    command: [sh, -c, 'echo # not a comment']
    resources:
      cpu: 2        # was a guess
      memory: 4Gi   # also a guess
    retries: 1

  # the model
  - name: train
    image: busybox
    command: [true]
";
        let out = patch(text, &[change("prep", Some(500), Some(384 * MIB))]);
        assert_eq!(
            out,
            text.replace("cpu: 2        # was", "cpu: 500m        # was")
                .replace("memory: 4Gi   # also", "memory: 384Mi   # also")
        );
    }

    #[test]
    fn missing_keys_and_missing_resources_are_added() {
        let text = "\
name: p
steps:
  - name: prep
    image: busybox
    resources:
      cpu: 1
  - name: train
    image: busybox
    command:
      - sh
      - -c
      - run
  # trailing comment stays after
";
        let out = patch(
            text,
            &[
                change("prep", None, Some(2 << 30)),
                change("train", Some(1500), Some(768 * MIB)),
            ],
        );
        assert_eq!(
            out,
            "\
name: p
steps:
  - name: prep
    image: busybox
    resources:
      cpu: 1
      memory: 2Gi
  - name: train
    image: busybox
    command:
      - sh
      - -c
      - run
    resources: { cpu: 1500m, memory: 768Mi }
  # trailing comment stays after
"
        );
    }

    #[test]
    fn flow_mappings_are_edited_in_place() {
        let text = "\
name: p
steps:
  - name: a
    image: busybox
    resources: { cpu: 2, memory: 1Gi }  # tuned
  - { name: b, image: busybox, resources: { memory: 8Gi, gpu: 0 } }
  - { name: c, image: busybox }
";
        let out = patch(
            text,
            &[
                change("a", Some(250), Some(128 * MIB)),
                change("b", Some(1000), Some(256 * MIB)),
                change("c", None, Some(64 * MIB)),
            ],
        );
        assert_eq!(
            out,
            "\
name: p
steps:
  - name: a
    image: busybox
    resources: { cpu: 250m, memory: 128Mi }  # tuned
  - { name: b, image: busybox, resources: { memory: 256Mi, gpu: 0, cpu: 1 } }
  - { name: c, image: busybox, resources: { memory: 64Mi } }
"
        );
    }

    #[test]
    fn an_unknown_step_or_an_unparsable_spec_writes_nothing() {
        let text = "name: p\nsteps:\n  - name: a\n    image: busybox\n";
        let e = apply(
            "p.yaml",
            Path::new("."),
            text,
            &[change("b", Some(100), None)],
        );
        assert_eq!(e.err().as_deref(), Some("no step `b` in p.yaml"));
        let e = apply("p.yaml", Path::new("."), "name: [", &[]);
        assert!(
            e.err()
                .is_some_and(|e| e.starts_with("the spec does not parse"))
        );
    }
}
