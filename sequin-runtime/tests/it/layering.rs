//! The runtime's layering, checked the way `fresh.rs` checks generated
//! files (ARCHITECTURE.md, invariants): `sequin-runtime` has no `pg_query`
//! dependency (the proxy owns the parse tree), `write/` and `sync/` never
//! reach into each other (both stand on `catalog/`, which reaches into
//! neither), no file in `write/`
//! imports from `write/mod.rs` (it only declares the pipeline), and no
//! function in either is longer than `MAX_FN_LINES`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// "About 120 lines" (issue #12): a longer function wants to become steps.
const MAX_FN_LINES: usize = 120;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Source with comments, strings and char literals blanked out (newlines
/// kept, so line numbers hold): what is left is code, where braces and
/// paths mean what they say.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |out: &mut String, s: &[u8]| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"/*") {
            // Block comments nest in Rust.
            let (mut depth, mut j) = (0usize, 0);
            while j < rest.len() {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &rest[..j]);
            i += j;
        } else if let Some(len) = raw_string_len(rest) {
            blank(&mut out, &rest[..len]);
            i += len;
        } else if rest[0] == b'"' || rest.starts_with(b"b\"") {
            let start = if rest[0] == b'"' { 1 } else { 2 };
            let mut j = start;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, &rest[..(j + 1).min(rest.len())]);
            i += j + 1;
        } else if rest[0] == b'\'' {
            // A char literal ('x', '\n', '\u{..}', '{') or a lifetime ('a).
            let len = if rest.get(1) == Some(&b'\\') {
                rest[2..].iter().position(|&c| c == b'\'').map(|p| p + 3)
            } else if rest.get(2) == Some(&b'\'') {
                Some(3)
            } else {
                std::str::from_utf8(&rest[1..rest.len().min(6)])
                    .ok()
                    .and_then(|s| s.chars().next())
                    .filter(|c| !c.is_ascii())
                    .map(|c| 2 + c.len_utf8())
                    .filter(|&n| rest.get(n) == Some(&b'\''))
                    .map(|n| n + 1)
            };
            let len = len.unwrap_or(1);
            blank(&mut out, &rest[..len]);
            i += len;
        } else {
            let ch = src[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// `r"..."`, `r#"..."#`, `br#"..."#`: their length, if one starts here.
fn raw_string_len(s: &[u8]) -> Option<usize> {
    let mut j = if s.starts_with(b"br") {
        2
    } else if s.starts_with(b"r") {
        1
    } else {
        return None;
    };
    let hashes = s[j..].iter().take_while(|&&c| c == b'#').count();
    j += hashes;
    if s.get(j) != Some(&b'"') {
        return None;
    }
    let close: Vec<u8> = std::iter::once(b'"')
        .chain(std::iter::repeat_n(b'#', hashes))
        .collect();
    let body = &s[j + 1..];
    let end = body
        .windows(close.len())
        .position(|w| w == close.as_slice())?;
    Some(j + 1 + end + close.len())
}

/// `(name, first line, line count)` of every function with a body.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(p) = code[from..].find("fn ") {
        let at = from + p;
        from = at + 3;
        let word_start =
            at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        if !word_start {
            continue;
        }
        let name: String = code[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue; // `fn(..)` pointer types
        }
        // The body's opening brace, unless a `;` ends a declaration first.
        let Some(open) = code[at..].find(['{', ';']).map(|o| at + o) else {
            continue;
        };
        if bytes[open] == b';' {
            continue;
        }
        let mut depth = 0usize;
        let mut close = open;
        for (k, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = open + k;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push((name, line_of(at), line_of(close) - line_of(at) + 1));
    }
    out
}

/// Every `crate::a::b` path the code names, `use crate::{a, b::c}` groups
/// expanded one level (enough for the module names checked here).
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = code[from..].find("crate::") {
        let at = from + p + "crate::".len();
        from = at;
        let rest = code[at..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            out.extend(group[..end].split(',').map(|s| s.trim().to_string()));
        } else {
            out.push(
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect(),
            );
        }
    }
    out
}

fn first_segment(path: &str) -> &str {
    path.split("::").next().unwrap_or("").trim()
}

fn read_code(path: &Path) -> String {
    code_only(&std::fs::read_to_string(path).unwrap())
}

fn rel(path: &Path) -> String {
    path.strip_prefix(src()).unwrap().display().to_string()
}

#[test]
fn the_runtime_does_not_depend_on_pg_query() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let named: Vec<&str> = manifest
        .lines()
        .filter(|l| l.trim_start().starts_with("pg_query"))
        .collect();
    assert!(
        named.is_empty(),
        "sequin-runtime/Cargo.toml names pg_query ({named:?}): the proxy's classify owns the \
         parse tree; take what write-through needs from what it records"
    );
}

#[test]
fn write_sync_and_catalog_are_layered() {
    let mut found = Vec::new();
    let rules = [
        ("write", ["sync", "sync"]),
        ("sync", ["write", "write"]),
        ("catalog", ["sync", "write"]),
    ];
    for (dir, forbidden) in rules {
        for file in rust_files(&src().join(dir)) {
            for path in crate_paths(&read_code(&file)) {
                if forbidden.contains(&first_segment(&path)) {
                    found.push(format!("{}: crate::{path}", rel(&file)));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "write/ and sync/ stand side by side on catalog/, which uses neither; move what both need there:\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn no_file_in_write_imports_from_its_mod_rs() {
    let dir = src().join("write");
    let mod_code = read_code(&dir.join("mod.rs"));
    let submodules: BTreeSet<String> = rust_files(&dir)
        .iter()
        .filter_map(|f| {
            let stem = f.file_stem()?.to_str()?.to_string();
            (stem != "mod").then_some(stem)
        })
        .collect();
    // What mod.rs itself defines (not its submodules or their re-exports).
    let mut defined = BTreeSet::new();
    for kw in [
        "fn ", "struct ", "enum ", "trait ", "type ", "const ", "static ",
    ] {
        for (p, _) in mod_code.match_indices(kw) {
            let before = mod_code[..p].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = mod_code[p + kw.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && !submodules.contains(&name) {
                defined.insert(name);
            }
        }
    }
    let mut found = Vec::new();
    for file in rust_files(&dir) {
        if file.file_name().is_some_and(|n| n == "mod.rs") {
            continue;
        }
        let code = read_code(&file);
        let mut paths: Vec<String> = crate_paths(&code)
            .into_iter()
            .filter_map(|p| p.strip_prefix("write::").map(str::to_string))
            .collect();
        for (p, _) in code.match_indices("super::") {
            let rest = code[p + "super::".len()..].trim_start();
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                paths.extend(group[..end].split(',').map(|s| s.trim().to_string()));
            } else {
                paths.push(
                    rest.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect(),
                );
            }
        }
        for path in paths {
            let name = first_segment(&path);
            if defined.contains(name) {
                found.push(format!("{}: {name}", rel(&file)));
            }
        }
    }
    assert!(
        found.is_empty(),
        "write/mod.rs declares the pipeline only; these files import items it defines \
         (move the items into their own file):\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn functions_in_write_and_sync_are_at_most_120_lines() {
    let mut long = Vec::new();
    for dir in ["write", "sync"] {
        for file in rust_files(&src().join(dir)) {
            for (name, line, lines) in functions(&read_code(&file)) {
                if lines > MAX_FN_LINES {
                    long.push(format!("{}:{line}: fn {name}, {lines} lines", rel(&file)));
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions longer than {MAX_FN_LINES} lines; split them into steps:\n  {}",
        long.join("\n  ")
    );
}

/// The scanner itself: strings, comments, chars and lifetimes do not count
/// as code, and a long function is seen as long.
#[test]
fn the_scanner_sees_code_only() {
    let src = r##"
// use crate::sync::x;
/* nested /* crate::sync */ still comment */
fn short<'a>(x: &'a str) -> char { let _ = "crate::sync {"; let _ = r#"}"#; '{' }
fn long() {
"##;
    let mut src = src.to_string();
    src.push_str(&"    let _ = 1;\n".repeat(130));
    src.push_str("}\nfn decl();\n");
    let code = code_only(&src);
    assert!(crate_paths(&code).is_empty(), "{code}");
    let fns = functions(&code);
    assert_eq!(fns.len(), 2, "{fns:?}");
    assert_eq!((fns[0].0.as_str(), fns[0].2), ("short", 1));
    assert_eq!((fns[1].0.as_str(), fns[1].2), ("long", 132));
    assert_eq!(
        crate_paths("use crate::{api, sync::Engine};"),
        vec!["api".to_string(), "sync::Engine".to_string()]
    );
}
