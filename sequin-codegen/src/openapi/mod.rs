//! The OpenAPI importer: drafts or updates a connector spec from an OpenAPI 3
//! document (JSON or YAML), as `cargo xtask import openapi` runs it.
//!
//! [`document`] reads the file; [`resource`] finds the resources (a list
//! endpoint and the endpoints sharing its path); [`draft`] makes each an
//! object ([`fields`] from its record schema, [`schema`] resolving `$ref`,
//! `allOf`, `anyOf`) and the connector around them ([`api`]: auth,
//! pagination, errors); [`render`] writes the YAML with `# review:` comments
//! ([`notes`]) where it guessed; [`merge`] adds what is new to an existing
//! file without touching its lines. The result is then checked like any
//! spec ([`crate::check_source`]).

pub mod api;
pub mod document;
pub mod draft;
pub mod fields;
pub mod merge;
pub mod notes;
pub mod render;
pub mod resource;
pub mod schema;

use std::fmt;
use std::path::{Path, PathBuf};

pub use document::Document;
pub use draft::{Draft, Options};
pub use merge::Merged;
pub use resource::Survey;

use crate::diagnostic::Diagnostics;

/// Why an import could not be done; each message is one line naming the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The io errors are in the message, not chained as sources, so that
    // the one line printed says everything once.
    #[error("cannot read {path}: {io} (fix: check the path)")]
    Read { path: PathBuf, io: std::io::Error },
    #[error("cannot write {path}: {io} (fix: check that its directory exists and is writable)")]
    Write { path: PathBuf, io: std::io::Error },
    #[error("{file}: {message} (fix: repair the document, or export it again as JSON or YAML)")]
    Syntax { file: String, message: String },
    #[error(
        "{file} is not OpenAPI 3 ({found}) (fix: convert it to OpenAPI 3 first, e.g. with swagger2openapi)"
    )]
    NotOpenApi3 { file: String, found: String },
    #[error(
        "connector name `{name}` is not a lowercase snake_case identifier (fix: use `--connector {suggestion}`)"
    )]
    ConnectorName { name: String, suggestion: String },
    #[error("no {what} found in {file} (fix: {fix})")]
    NoResources {
        what: String,
        file: String,
        fix: String,
    },
    #[error("no resource named `{name}` in {file} (fix: name one of {choices})")]
    UnknownObject {
        name: String,
        file: String,
        choices: String,
    },
    #[error("cannot re-import onto {file}: {message} (fix: {fix})")]
    Merge {
        file: String,
        message: String,
        fix: String,
    },
}

/// `cargo xtask import openapi`'s arguments.
#[derive(Clone, Debug)]
pub struct Request {
    /// The OpenAPI document.
    pub document: PathBuf,
    pub connector: String,
    /// Resources to import; empty: every top-level one.
    pub objects: Vec<String>,
    /// The spec file to write (created, or merged into when it exists).
    pub out: PathBuf,
    /// How `out` is named in messages (relative to the workspace).
    pub shown_as: PathBuf,
}

/// What an import did.
#[derive(Clone, Debug)]
pub struct Report {
    pub document: String,
    pub title: String,
    pub list_endpoints: usize,
    pub top_level: usize,
    pub needing_query: usize,
    pub nested: usize,
    /// Objects drafted from the document, by table name.
    pub drafted: Vec<String>,
    pub out: PathBuf,
    /// The re-import's findings, when `out` existed.
    pub merged: Option<Merged>,
    /// `# review:` comments written.
    pub reviews: usize,
    /// The normal checks of the written spec.
    pub diagnostics: Diagnostics,
}

impl Report {
    /// Whether the written spec passed every check.
    pub fn is_valid(&self) -> bool {
        self.diagnostics.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "read {} ({}): {} list endpoints, {} top-level ({} of them need query parameters: searches, lists of one parent), {} nested under a parent's id",
            self.document,
            self.title,
            self.list_endpoints,
            self.top_level,
            self.needing_query,
            self.nested
        )?;
        writeln!(
            f,
            "drafted {} objects: {}",
            self.drafted.len(),
            self.drafted.join(", ")
        )?;
        let out = self.out.display();
        match &self.merged {
            None => writeln!(
                f,
                "wrote {out} (new file); {} comments marked `review:` to check",
                self.reviews
            )?,
            Some(m) => write_merge(f, &out.to_string(), m)?,
        }
        if self.diagnostics.is_empty() {
            writeln!(f, "check: the spec is valid")
        } else {
            writeln!(
                f,
                "check: {} problem(s), fix them before `cargo xtask gen`:",
                self.diagnostics.len()
            )?;
            writeln!(f, "{}", self.diagnostics)
        }
    }
}

fn write_merge(f: &mut fmt::Formatter<'_>, out: &str, m: &Merged) -> fmt::Result {
    let mut added: Vec<String> = m
        .added_objects
        .iter()
        .map(|(o, n)| format!("object `{o}` ({n} fields)"))
        .collect();
    if !m.added_fields.is_empty() {
        let fields: Vec<String> = m
            .added_fields
            .iter()
            .map(|(o, n)| format!("`{o}.{n}`"))
            .collect();
        added.push(format!("fields {}", fields.join(", ")));
    }
    if added.is_empty() {
        writeln!(
            f,
            "updated {out}: nothing new in the document; the file is unchanged"
        )?;
    } else {
        writeln!(
            f,
            "updated {out}: added {}; {} comments marked `review:` to check",
            added.join("; "),
            m.reviews
        )?;
    }
    let mut gone: Vec<String> = m
        .gone_objects
        .iter()
        .map(|o| format!("object `{o}`"))
        .collect();
    gone.extend(
        m.gone_fields
            .iter()
            .map(|(o, n)| format!("field `{o}.{n}`")),
    );
    if !gone.is_empty() {
        writeln!(
            f,
            "gone from the document, kept in the file (delete them if the API dropped them): {}",
            gone.join(", ")
        )?;
    }
    Ok(())
}

/// Reads the document, drafts, merges into `out` when it exists, writes it
/// and checks it.
pub fn import(req: &Request) -> Result<Report, Error> {
    let text = std::fs::read_to_string(&req.document).map_err(|io| Error::Read {
        path: req.document.clone(),
        io,
    })?;
    let name = req.document.file_name().map_or_else(
        || req.document.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let doc = Document::parse(&name, &text)?;
    let existing = match std::fs::read_to_string(&req.out) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(io) => {
            return Err(Error::Read {
                path: req.out.clone(),
                io,
            });
        }
    };
    let schema_ref = req
        .out
        .parent()
        .filter(|d| d.join("schema.json").is_file())
        .map(|_| "./schema.json".to_string());
    let opts = Options {
        connector: req.connector.clone(),
        objects: req.objects.clone(),
        schema_ref,
    };
    let (written, report) = import_text(&doc, &opts, existing.as_deref(), &req.shown_as)?;
    if existing.as_deref() != Some(written.as_str()) {
        if let Some(dir) = req.out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|io| Error::Write {
                path: req.out.clone(),
                io,
            })?;
        }
        std::fs::write(&req.out, &written).map_err(|io| Error::Write {
            path: req.out.clone(),
            io,
        })?;
    }
    Ok(report)
}

/// The import without files: the spec text to write (a draft, or
/// `existing` with what is new added) and the report. `shown_as` names the
/// spec in diagnostics.
pub fn import_text(
    doc: &Document,
    opts: &Options,
    existing: Option<&str>,
    shown_as: &Path,
) -> Result<(String, Report), Error> {
    if !sequin_spec::naming::is_snake_identifier(&opts.connector) {
        return Err(Error::ConnectorName {
            name: opts.connector.clone(),
            suggestion: sequin_spec::naming::table_name(&opts.connector),
        });
    }
    let survey = resource::survey(doc);
    if survey.resources.is_empty() {
        return Err(Error::NoResources {
            what: "list endpoint".into(),
            file: doc.name.clone(),
            fix: "the importer drafts objects from GET endpoints answering an array of records; check that the document has such paths".into(),
        });
    }
    let draft = draft::draft(doc, &survey, opts)?;
    let (text, merged, reviews) = match existing {
        None => {
            let text = render::document(&draft.header, &draft.connector, &draft.notes);
            (text, None, draft.notes.reviews())
        }
        Some(existing) => {
            let file = shown_as.display().to_string();
            let mut m = merge::merge(&file, existing, doc, &survey, &draft, &opts.objects)?;
            let text = std::mem::take(&mut m.text);
            let reviews = m.reviews;
            (text, Some(m), reviews)
        }
    };
    let diagnostics = match crate::check_source(shown_as, &text, &crate::current_validator()) {
        Ok(_) => Diagnostics::default(),
        Err(d) => d,
    };
    let report = Report {
        document: doc.name.clone(),
        title: doc.title().to_string(),
        list_endpoints: survey.resources.len(),
        top_level: survey.top_level(),
        needing_query: survey.needing_query(),
        nested: survey.nested(),
        drafted: draft
            .connector
            .objects
            .iter()
            .map(|o| o.name.clone())
            .collect(),
        out: shown_as.to_path_buf(),
        merged,
        reviews,
        diagnostics,
    };
    Ok((text, report))
}
