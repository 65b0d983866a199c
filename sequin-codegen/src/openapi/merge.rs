//! Re-import onto an existing spec: text is inserted, never rewritten.
//!
//! The file is parsed with positions (`sequin_spec::yaml`); objects of the
//! draft that the file lacks are appended after its last object, fields it
//! lacks after the object's last field, each rendered like a fresh draft at
//! the indentation found there. Every existing line, comments included,
//! stays as it is. What the file declares but the document no longer has
//! is reported, not deleted.
//!
//! A field counts as present when a field of the object has its name or its
//! value path, or a value path below it (`properties.email` covers
//! `properties`). A comment `# import: omit a, b` inside an object keeps
//! the fields it names out, for fields left out on purpose.

use sequin_spec::model::Pagination;
use sequin_spec::yaml::{self, Located};
use serde_json::Value;

use super::Error;
use super::document::Document;
use super::draft::Draft;
use super::render;
use super::resource::Survey;
use super::schema::{Kind, view};

/// What a re-import did and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Merged {
    pub text: String,
    /// Objects appended, with their number of fields.
    pub added_objects: Vec<(String, usize)>,
    /// `(object, field)` appended to existing objects.
    pub added_fields: Vec<(String, String)>,
    /// Objects of the file that no list endpoint of the document matches.
    pub gone_objects: Vec<String>,
    /// `(object, field)` of the file whose value the record no longer has.
    pub gone_fields: Vec<(String, String)>,
    /// `# review:` comments among the inserted lines.
    pub reviews: usize,
}

/// An existing object as the file has it.
struct Existing<'v> {
    index: usize,
    value: &'v Value,
}

impl Existing<'_> {
    fn str(&self, key: &str) -> &str {
        self.value[key].as_str().unwrap_or("")
    }

    fn list_path(&self) -> &str {
        self.value["endpoints"]["list"]["path"]
            .as_str()
            .unwrap_or("")
    }

    /// Field names and value paths.
    fn field_keys(&self) -> Vec<(String, String)> {
        self.value["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| {
                let name = f["name"].as_str()?.to_string();
                let path = f["path"].as_str().unwrap_or(&name).to_string();
                Some((name, path))
            })
            .collect()
    }
}

/// Merges `draft` into the spec text `existing` (of `file`).
/// `restricted`: only some objects were asked for, so only those can be
/// reported gone.
pub fn merge(
    file: &str,
    existing: &str,
    doc: &Document,
    survey: &Survey,
    draft: &Draft,
    asked: &[String],
) -> Result<Merged, Error> {
    let located = yaml::parse(existing).map_err(|e| Error::Merge {
        file: file.to_string(),
        message: format!(
            "{}:{}: YAML syntax error: {}",
            e.span.line, e.span.col, e.message
        ),
        fix: "repair the YAML, or move the file away to draft afresh".into(),
    })?;
    let lines: Vec<&str> = existing.split_inclusive('\n').collect();
    let objects: Vec<Existing> = located.value["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(index, value)| Existing { index, value })
        .collect();
    let default_pagination: Option<Pagination> =
        serde_json::from_value(located.value["pagination"].clone()).ok();
    let mut out = Merged::default();
    let mut inserts: Vec<(usize, String)> = Vec::new();
    let mut new_objects = String::new();
    for (k, object) in draft.connector.objects.iter().enumerate() {
        let found = objects.iter().find(|e| {
            e.str("name") == object.name
                || e.list_path() == object.endpoints.list.path
                    && e.str("api_name") == object.api_name
        });
        match found {
            Some(e) => {
                let (at, text, added) = new_fields(file, &lines, &located, e, draft, k)?;
                if !added.is_empty() {
                    out.reviews += text.matches("# review:").count();
                    inserts.push((at, text));
                    let name = e.str("name").to_string();
                    out.added_fields
                        .extend(added.into_iter().map(|f| (name.clone(), f)));
                }
            }
            None => {
                let mut o = object.clone();
                let effective = o.pagination.clone().or(draft.connector.pagination.clone());
                o.pagination = effective.filter(|p| Some(p) != default_pagination.as_ref());
                let indent = objects_indent(file, &lines, &located, objects.len())?;
                let text = render::item(
                    &render::part_value(&o),
                    &format!("/objects/{k}"),
                    indent,
                    &draft.notes,
                );
                out.reviews += text.matches("# review:").count();
                if !objects.is_empty() || !new_objects.is_empty() {
                    new_objects.push('\n');
                }
                new_objects.push_str(&text);
                out.added_objects.push((o.name.clone(), o.fields.len()));
            }
        }
    }
    if !new_objects.is_empty() {
        let at = match objects.last() {
            Some(last) => {
                let (start, dash) =
                    item_start(file, &lines, &located, &format!("/objects/{}", last.index))?;
                item_end(&lines, start, dash) + 1
            }
            None => {
                // No objects yet: `objects:` goes at the end of the file.
                new_objects = format!("objects:\n{new_objects}");
                lines.len()
            }
        };
        inserts.push((at, new_objects));
    }
    gone(doc, survey, draft, &objects, asked, &mut out);
    out.text = apply(&lines, inserts);
    Ok(out)
}

/// The fields of draft object `k` that existing object `e` lacks, rendered
/// for insertion after its last field: (line index, text, names).
fn new_fields(
    file: &str,
    lines: &[&str],
    located: &Located,
    e: &Existing,
    draft: &Draft,
    k: usize,
) -> Result<(usize, String, Vec<String>), Error> {
    let keys = e.field_keys();
    let base = format!("/objects/{}", e.index);
    let (start, dash) = item_start(file, lines, located, &base)?;
    let end = item_end(lines, start, dash);
    let omitted = omitted(&lines[start..=end]);
    let covered = |name: &str| {
        keys.iter()
            .any(|(n, path)| n == name || path == name || path.starts_with(&format!("{name}.")))
            || omitted.iter().any(|o| o == name)
    };
    let new: Vec<(usize, &sequin_spec::model::Field)> = draft.connector.objects[k]
        .fields
        .iter()
        .enumerate()
        .filter(|(_, f)| !covered(&f.name))
        .collect();
    if new.is_empty() {
        return Ok((0, String::new(), Vec::new()));
    }
    let fields = located.value.pointer(&format!("{base}/fields"));
    let Some(count) = fields
        .and_then(Value::as_array)
        .map(Vec::len)
        .filter(|n| *n > 0)
    else {
        return Err(Error::Merge {
            file: file.to_string(),
            message: format!("object `{}` has no list of fields to add to", e.str("name")),
            fix: "give it a block `fields:` list with at least one `- {name: ..., type: ...}` line"
                .into(),
        });
    };
    let (last_start, field_dash) = item_start(
        file,
        lines,
        located,
        &format!("{base}/fields/{}", count - 1),
    )?;
    let at = item_end(lines, last_start, field_dash) + 1;
    let mut text = String::new();
    for (j, f) in &new {
        text.push_str(&render::item(
            &render::part_value(*f),
            &format!("/objects/{k}/fields/{j}"),
            field_dash,
            &draft.notes,
        ));
    }
    Ok((at, text, new.iter().map(|(_, f)| f.name.clone()).collect()))
}

/// The indentation of the objects' dashes (2 when there are none).
fn objects_indent(
    file: &str,
    lines: &[&str],
    located: &Located,
    count: usize,
) -> Result<usize, Error> {
    if count == 0 {
        return Ok(2);
    }
    item_start(file, lines, located, "/objects/0").map(|(_, dash)| dash)
}

/// The line index and dash column of the block sequence item at `pointer`.
fn item_start(
    file: &str,
    lines: &[&str],
    located: &Located,
    pointer: &str,
) -> Result<(usize, usize), Error> {
    let span = located.span(pointer);
    let line = span.line.saturating_sub(1);
    let parent_span = pointer
        .rsplit_once('/')
        .map(|(parent, _)| located.span(parent))
        .unwrap_or_default();
    let flow = lines
        .get(parent_span.line.saturating_sub(1))
        .and_then(|l| l.get(parent_span.col.saturating_sub(1)..))
        .is_some_and(|rest| rest.starts_with('['));
    let text = lines.get(line).copied().unwrap_or("");
    let trimmed = text.trim_start();
    if flow || !(trimmed.starts_with("- ") || trimmed.trim_end() == "-") {
        let what = pointer.trim_start_matches('/').replace('/', ".");
        return Err(Error::Merge {
            file: file.to_string(),
            message: format!("{what} (line {}) is not an item of a block list", span.line),
            fix: "write that list in block style, one `- ` item per line".into(),
        });
    }
    Ok((line, text.len() - trimmed.len()))
}

/// The index of the last line of the item starting at `start`: the last
/// non-comment line before one indented at most as far as its dash.
fn item_end(lines: &[&str], start: usize, dash: usize) -> usize {
    let mut end = start;
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        let t = line.trim_start();
        if t.trim().is_empty() || t.starts_with('#') {
            continue;
        }
        if line.len() - t.len() <= dash {
            break;
        }
        end = i;
    }
    end
}

/// Field names listed by `# import: omit a, b` comments.
fn omitted(lines: &[&str]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.trim_start().strip_prefix('#'))
        .filter_map(|c| c.trim_start().strip_prefix("import: omit"))
        .flat_map(|names| names.split([',', ' ']))
        .map(|n| n.trim().trim_matches('`').to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

/// Objects and fields of the file the document no longer has.
fn gone(
    doc: &Document,
    survey: &Survey,
    draft: &Draft,
    objects: &[Existing],
    asked: &[String],
    out: &mut Merged,
) {
    for e in objects {
        let name = e.str("name");
        if !asked.is_empty() && !asked.iter().any(|a| a == name || a == e.str("api_name")) {
            continue;
        }
        let drafted = draft.connector.objects.iter().position(|o| {
            o.name == name
                || o.endpoints.list.path == e.list_path() && o.api_name == e.str("api_name")
        });
        match drafted {
            Some(k) => {
                for (field, path) in e.field_keys() {
                    if !has_path(doc, draft.records[k], &path) {
                        out.gone_fields.push((name.to_string(), field));
                    }
                }
            }
            None => {
                let listed = survey.resources.iter().any(|r| {
                    r.collection == e.list_path() || r.table == name || r.answers_to(name)
                });
                if !listed {
                    out.gone_objects.push(name.to_string());
                }
            }
        }
    }
}

/// Whether a dotted value path leads somewhere in a record schema
/// (free-form maps and untyped values take any path).
fn has_path(doc: &Document, schema: &Value, path: &str) -> bool {
    let v = view(doc, schema);
    let (seg, rest) = path.split_once('.').unwrap_or((path, ""));
    let next = if seg.parse::<usize>().is_ok() && v.kind == Kind::Array {
        v.items
    } else {
        v.property(seg)
    };
    match next {
        Some(_) if rest.is_empty() => true,
        Some(n) => has_path(doc, n, rest),
        None => v.free_form || v.kind == Kind::Unknown && v.properties.is_empty() || v.expandable,
    }
}

/// The lines with each insertion placed before the line index it names.
fn apply(lines: &[&str], mut inserts: Vec<(usize, String)>) -> String {
    inserts.sort_by_key(|(at, _)| *at);
    let mut out = String::new();
    let mut next = inserts.into_iter().peekable();
    for (i, line) in lines.iter().enumerate() {
        while let Some((_, text)) = next.next_if(|(at, _)| *at == i) {
            out.push_str(text.as_str());
        }
        out.push_str(line);
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for (_, text) in next {
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_end_before_the_next_sibling_or_key() {
        let text = "objects:\n  - name: a\n    fields:\n      - {name: x}\n      # trailing comment\n\n  - name: b\n    fields:\n      - {name: y}\n# end\nother: 1\n";
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        assert_eq!(item_end(&lines, 1, 2), 3);
        assert_eq!(item_end(&lines, 6, 2), 8);
        assert_eq!(item_end(&lines, 3, 6), 3);
        let merged = apply(&lines, vec![(4, "      - {name: z}\n".into())]);
        assert!(merged.contains("      - {name: x}\n      - {name: z}\n      # trailing"));
    }

    #[test]
    fn omit_markers() {
        assert_eq!(
            omitted(&["  # import: omit `sources`, tax_ids\n", "  - {name: a}\n"]),
            ["sources", "tax_ids"]
        );
    }
}
