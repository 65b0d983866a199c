//! `cargo xtask`: the project's dev tasks.
//!
//! - `gen [--check]`: validate every connector spec and (re)generate the
//!   committed files; `--check` changes nothing and fails on any spec problem
//!   or stale file.
//! - `import openapi <file> --connector <name> [--objects a,b] [--out f]`:
//!   draft a connector spec from an OpenAPI 3 document, or add what is new
//!   to an existing one (`sequin_codegen::openapi`), then check it.
//! - `deps`: install the missing system packages (see [`system`]).
//! - `test`: `deps`, then every test of the workspace.
//! - `demo ...`, `bench ...`: `deps`, then `sequin-devtool` (tests/devtool)
//!   with the same arguments: the demo on an embedded default, and the
//!   benchmarks.
//!
//! xtask stays light so that it builds on a machine with only Rust: it is
//! what installs libclang, which `sequin-proxy` (through pg_query) needs at
//! build time, so nothing that needs a system library may be linked here.
//! The demo and the benchmarks link the proxy, hence their own crate, built
//! by `cargo run` once the packages are in place.

mod system;

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Sequin dev tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Validate connector specs and regenerate committed code, DDL, docs and schema.
    Gen {
        /// Change nothing; fail if any spec is invalid or any generated file is stale.
        #[arg(long)]
        check: bool,
    },
    /// Draft a connector spec from an API description, or add what is new to one.
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
    /// Install missing system packages, then run every test (extra args go to `cargo test`).
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Install the system packages the tests, the demo and the benchmarks need.
    Deps,
    /// The main job: throwaway Postgres + API simulators, migrate, backfill,
    /// live sync (options: `cargo xtask demo --help`).
    #[command(disable_help_flag = true)]
    Demo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks `sync`, `proxy`, `write`, `account`, `bulk`, `events` and `scale`, each
    /// reported against a baseline measured in the same run (`cargo xtask bench --help`).
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ImportSource {
    /// From an OpenAPI 3 document (JSON or YAML): writes connectors/<name>.yaml, or adds the
    /// objects and fields new in the document to it when it exists, then checks it.
    Openapi {
        /// The OpenAPI document.
        file: PathBuf,
        /// The connector's name (lowercase snake_case).
        #[arg(long)]
        connector: String,
        /// Resources to import, comma-separated (`customer,refund`); default: every top-level one.
        #[arg(long, value_delimiter = ',')]
        objects: Vec<String>,
        /// The spec to write or update (default: connectors/<connector>.yaml).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Gen { check } => gen_task(check),
        Task::Import {
            source:
                ImportSource::Openapi {
                    file,
                    connector,
                    objects,
                    out,
                },
        } => import_openapi(file, connector, objects, out),
        Task::Test { args } => test_task(&args),
        Task::Deps => system::ensure_packages().map(|_| true),
        Task::Demo { args } => devtool("demo", &args),
        Task::Bench { args } => devtool("bench", &args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

fn gen_task(check: bool) -> Result<bool> {
    let root = root();
    let files = match sequin_codegen::generate(&root) {
        Ok(files) => files,
        Err(sequin_codegen::Error::Specs(diags)) => {
            eprintln!("{diags}");
            eprintln!(
                "error: {} problem(s) in connector specs; nothing was generated",
                diags.len()
            );
            return Ok(false);
        }
        Err(e) => return Err(e).context("generating"),
    };
    if check {
        let stale = sequin_codegen::stale_files(&root, &files);
        if stale.is_empty() {
            println!(
                "gen --check: {} generated files are up to date",
                files.len()
            );
            return Ok(true);
        }
        for s in &stale {
            eprintln!("{s}");
        }
        eprintln!("error: generated files are stale; run `cargo xtask gen` and commit the result");
        return Ok(false);
    }
    let changed = sequin_codegen::write(&root, &files).context("writing generated files")?;
    if changed.is_empty() {
        println!("gen: {} generated files already up to date", files.len());
    } else {
        for p in &changed {
            println!("wrote {}", p.display());
        }
    }
    Ok(true)
}

fn import_openapi(
    file: PathBuf,
    connector: String,
    objects: Vec<String>,
    out: Option<PathBuf>,
) -> Result<bool> {
    let root = root();
    let out = match out {
        Some(p) => std::path::absolute(p).context("resolving --out")?,
        None => root.join("connectors").join(format!("{connector}.yaml")),
    };
    let shown_as = out.strip_prefix(&root).unwrap_or(&out).to_path_buf();
    let request = sequin_codegen::openapi::Request {
        document: file,
        connector,
        objects: objects.into_iter().filter(|o| !o.is_empty()).collect(),
        out,
        shown_as,
    };
    let report = sequin_codegen::openapi::import(&request)?;
    print!("{report}");
    Ok(report.is_valid())
}

/// Cargo, as the one that runs us (`CARGO`), so the toolchain stays the same.
fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Installs the missing system packages, then becomes `sequin-devtool
/// <task> <args>` (built by `cargo run`). Benchmarks build it in release:
/// `bench proxy` runs the proxy in-process, and a debug proxy measures the
/// compiler's work, not ours; the demo keeps xtask's dev profile. Replacing
/// this process (exec) rather than waiting for a child leaves Ctrl-C, which
/// the demo handles to clean up, and the exit status to the tool alone.
fn devtool(task: &str, args: &[String]) -> Result<bool> {
    system::ensure_packages()?;
    eprintln!("building sequin-devtool (the demo and the benchmarks) ...");
    let mut run = cargo();
    run.current_dir(root()).args(["run", "--quiet"]);
    if task == "bench" {
        run.arg("--release");
    }
    run.args(["-p", "sequin-devtool", "--", task]).args(args);
    Err(run.exec()).context("running `cargo run -p sequin-devtool`")
}

fn test_task(args: &[String]) -> Result<bool> {
    system::ensure_packages()?;
    warn_low_disk(&[root(), std::env::temp_dir()]);
    let status = cargo()
        .current_dir(root())
        .args(["test", "--workspace"])
        .args(args)
        .status()
        .context("running cargo test")?;
    Ok(status.success())
}

/// Free space the test run wants where it builds and where its throwaway
/// clusters live: a full disk makes Postgres PANIC mid-test, which shows up
/// as unrelated-looking failures in every test sharing that server.
const TEST_DISK_BYTES: u64 = 6 << 30;

/// Prints a warning for each of `paths` on a filesystem with less than
/// [`TEST_DISK_BYTES`] free (`df -Pk`; silent when `df` is unavailable).
fn warn_low_disk(paths: &[std::path::PathBuf]) {
    for path in paths {
        let Ok(out) = std::process::Command::new("df")
            .arg("-Pk")
            .arg(path)
            .output()
        else {
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let avail_kib = text
            .lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(kib) = avail_kib
            && kib * 1024 < TEST_DISK_BYTES
        {
            eprintln!(
                "warning: only {:.1} GiB free at {}; the tests want about {} GiB \
                 (a full disk makes the test Postgres servers crash). \
                 Free space, e.g. `cargo clean`, before trusting failures.",
                kib as f64 / (1 << 20) as f64,
                path.display(),
                TEST_DISK_BYTES >> 30
            );
        }
    }
}
