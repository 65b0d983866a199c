//! System packages the tests need, installed with apt when we can.
//!
//! A fresh Debian machine with only Rust lacks the PostgreSQL server (the
//! tests start throwaway clusters), libclang (pg_query's bindgen), and the
//! Python and Node runtimes the driver tests use (psycopg 3 + SQLAlchemy,
//! node-postgres; those packages themselves come from PyPI and npm). As
//! root we install them; otherwise we stop with the exact command to run.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

/// A package and how to tell it is present.
struct Need {
    package: &'static str,
    why: &'static str,
    present: fn() -> bool,
}

fn has_postgres_server() -> bool {
    std::env::var_os("DATABASE_URL").is_some()
        || std::fs::read_dir("/usr/lib/postgresql")
            .map(|d| d.flatten().any(|e| e.path().join("bin/postgres").exists()))
            .unwrap_or(false)
}

fn has_libclang() -> bool {
    if let Some(p) = std::env::var_os("LIBCLANG_PATH") {
        return Path::new(&p).exists();
    }
    [
        "/usr/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
    ]
    .iter()
    .chain(
        [
            "/usr/lib/llvm-14/lib",
            "/usr/lib/llvm-15/lib",
            "/usr/lib/llvm-16/lib",
        ]
        .iter(),
    )
    .any(|dir| {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten().any(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.starts_with("libclang") && n.contains(".so") && !n.starts_with("libclang-cpp")
                })
            })
            .unwrap_or(false)
    })
}

fn runs(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn has_python_venv() -> bool {
    runs("python3", &["-m", "venv", "--help"]) && runs("python3", &["-m", "ensurepip", "--version"])
}

fn has_node() -> bool {
    runs("node", &["--version"])
}

fn has_npm() -> bool {
    runs("npm", &["--version"])
}

const NEEDS: &[Need] = &[
    Need {
        package: "postgresql",
        why: "tests start throwaway PostgreSQL clusters",
        present: has_postgres_server,
    },
    Need {
        package: "libclang-dev",
        why: "pg_query (the proxy's SQL parser) generates bindings with libclang",
        present: has_libclang,
    },
    Need {
        package: "python3-venv",
        why: "driver tests run psycopg 3 and SQLAlchemy from a virtualenv",
        present: has_python_venv,
    },
    Need {
        package: "nodejs",
        why: "driver tests run node-postgres",
        present: has_node,
    },
    Need {
        package: "npm",
        why: "driver tests install node-postgres with npm",
        present: has_npm,
    },
];

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Installs missing packages with apt (as root), or fails with the command.
pub fn ensure_packages() -> Result<()> {
    let missing: Vec<&Need> = NEEDS.iter().filter(|n| !(n.present)()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|n| n.package).collect();
    for n in &missing {
        eprintln!("missing system package {}: {}", n.package, n.why);
    }
    let cmd = format!("apt-get install -y {}", names.join(" "));
    if !is_root() || Command::new("apt-get").arg("--version").output().is_err() {
        bail!("install the missing packages first: sudo apt-get update && sudo {cmd}");
    }
    eprintln!("installing: {cmd}");
    let ok = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
        && Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&names)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if !ok {
        bail!("`{cmd}` failed; run it by hand (as root) and retry");
    }
    let still: Vec<&str> = NEEDS
        .iter()
        .filter(|n| !(n.present)())
        .map(|n| n.package)
        .collect();
    if !still.is_empty() {
        bail!("still missing after apt-get: {}", still.join(" "));
    }
    Ok(())
}
