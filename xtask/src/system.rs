//! System packages the tests, the demo and the benchmarks need, installed
//! with apt when we can.
//!
//! A fresh Debian machine with only Rust lacks the PostgreSQL server (tests,
//! demo and benchmarks start throwaway clusters from its binaries), libclang
//! (pg_query, the proxy's SQL parser, generates its bindings with it at build
//! time), the Python and Node runtimes the driver tests use (psycopg 3 +
//! SQLAlchemy, node-postgres; those come from PyPI and npm), Prometheus's
//! `promtool` (checks the metrics exposition) and `nats-server` (the NATS
//! JetStream sink's tests start one).
//!
//! Each is detected by what is actually used (the binaries, the library and
//! its headers), with `dpkg -s` only where that is the surer sign: the same
//! thing may come from elsewhere (NodeSource's `nodejs` ships `npm`, and
//! Debian's `npm` conflicts with it; pyenv's Python has venv). As root the
//! missing packages are installed with apt-get; otherwise we stop and print
//! the exact command to run.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

/// A Debian package and how to tell that what we use from it is present.
struct Need {
    package: &'static str,
    why: &'static str,
    present: fn() -> bool,
}

const NEEDS: &[Need] = &[
    Need {
        package: "postgresql",
        why: "tests, the demo and the benchmarks start throwaway PostgreSQL clusters",
        present: has_postgres_server,
    },
    Need {
        package: "libclang-dev",
        why: "pg_query (the proxy's SQL parser) generates its bindings with libclang at build time",
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
    Need {
        package: "prometheus",
        why: "its `promtool` checks the metrics exposition",
        present: has_promtool,
    },
    Need {
        package: "nats-server",
        why: "the NATS JetStream sink's tests start a throwaway `nats-server -js`",
        present: has_nats_server,
    },
];

/// The flags of every install: `--no-install-recommends` keeps e.g.
/// prometheus-node-exporter (a second daemon) off the machine.
const APT_INSTALL: &[&str] = &["install", "-y", "--no-install-recommends"];

/// Installs the missing packages with apt-get (as root), or fails with the
/// command that would.
pub fn ensure_packages() -> Result<()> {
    let missing = missing();
    if missing.is_empty() {
        return Ok(());
    }
    for n in &missing {
        eprintln!("missing system package {}: {}", n.package, n.why);
    }
    let names: Vec<&str> = missing.iter().map(|n| n.package).collect();
    let install = format!("apt-get {} {}", APT_INSTALL.join(" "), names.join(" "));
    if !runs("apt-get", &["--version"]) {
        bail!(
            "no apt-get on this machine: install the equivalents of the Debian packages {} \
             with its package manager, then retry",
            names.join(" ")
        );
    }
    if !is_root() {
        let update = if apt_index_present() {
            ""
        } else {
            "sudo apt-get update && "
        };
        bail!("install the missing system packages first, then retry:\n  {update}sudo {install}");
    }
    install_with_apt(&names, &install)?;
    let still: Vec<&str> = self::missing().iter().map(|n| n.package).collect();
    if !still.is_empty() {
        bail!(
            "`{install}` succeeded but these are still not usable: {}; \
             check that PG_BINDIR, LIBCLANG_PATH and PATH do not point elsewhere",
            still.join(" ")
        );
    }
    Ok(())
}

fn missing() -> Vec<&'static Need> {
    NEEDS.iter().filter(|n| !(n.present)()).collect()
}

/// `apt-get install`, refreshing the package index first only when there is
/// none, and otherwise only when an install from the existing index failed
/// (stale versions gone from the mirror).
fn install_with_apt(names: &[&str], install: &str) -> Result<()> {
    let mut updated = false;
    if !apt_index_present() {
        apt_update()?;
        updated = true;
    }
    eprintln!("installing: {install}");
    if apt_install(names) {
        return Ok(());
    }
    if updated {
        bail!("`{install}` failed; run it by hand (as root) to see why, then retry");
    }
    eprintln!("`{install}` failed; refreshing the package index and retrying");
    apt_update()?;
    if !apt_install(names) {
        bail!(
            "`{install}` failed even after `apt-get update`; run it by hand (as root) to see why, \
             then retry"
        );
    }
    Ok(())
}

fn apt_update() -> Result<()> {
    eprintln!("running: apt-get update");
    let ok = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!(
            "`apt-get update` failed; check the apt sources and the network, run it by hand, \
             then retry"
        );
    }
    Ok(())
}

fn apt_install(names: &[&str]) -> bool {
    Command::new("apt-get")
        .args(APT_INSTALL)
        .arg("-qq")
        .args(names)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether apt has downloaded package lists (a fresh container often has
/// none, and then every install fails until `apt-get update`).
fn apt_index_present() -> bool {
    std::fs::read_dir("/var/lib/apt/lists").is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
    })
}

/// The server binaries where `sequin-pgtemp` takes them from (`PG_BINDIR`
/// when it holds `postgres`, else the newest `/usr/lib/postgresql/<version>/bin`
/// that does) and, as root, the `postgres` user the clusters run as.
fn has_postgres_server() -> bool {
    let has_server = |bin: &PathBuf| bin.join("postgres").exists();
    let from_env = std::env::var_os("PG_BINDIR")
        .map(PathBuf::from)
        .filter(has_server);
    let newest = || {
        entries(Path::new("/usr/lib/postgresql"))
            .into_iter()
            .filter_map(|v| {
                let version: u32 = v.file_name()?.to_str()?.parse().ok()?;
                Some((version, v.join("bin")))
            })
            .filter(|(_, bin)| has_server(bin))
            .max()
            .map(|(_, bin)| bin)
    };
    let Some(bindir) = from_env.or_else(newest) else {
        return false;
    };
    let tools = ["initdb", "pg_ctl", "psql", "pgbench"];
    tools.iter().all(|t| bindir.join(t).exists()) && (!is_root() || runs("id", &["postgres"]))
}

/// libclang as bindgen (through clang-sys) finds it, plus clang's own
/// headers (`stddef.h`), without which bindgen fails on pg_query's C
/// headers; Debian's `libclang-dev` brings both.
fn has_libclang() -> bool {
    if dpkg_installed("libclang-dev") && std::env::var_os("LIBCLANG_PATH").is_none() {
        return true;
    }
    has_libclang_library() && has_clang_headers()
}

fn has_libclang_library() -> bool {
    let is_libclang = |p: &PathBuf| {
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        name.starts_with("libclang") && name.contains(".so") && !name.starts_with("libclang-cpp")
    };
    // clang-sys searches only LIBCLANG_PATH (a file or a directory) when it is set.
    if let Some(path) = std::env::var_os("LIBCLANG_PATH") {
        let path = PathBuf::from(path);
        return (path.is_file() && is_libclang(&path)) || entries(&path).iter().any(is_libclang);
    }
    let multiarch = entries(Path::new("/usr/lib"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with("-linux-gnu"));
    [PathBuf::from("/usr/lib"), PathBuf::from("/usr/local/lib")]
        .into_iter()
        .chain(multiarch)
        .chain(llvm_dirs().map(|p| p.join("lib")))
        .any(|dir| entries(&dir).iter().any(is_libclang))
}

fn has_clang_headers() -> bool {
    [
        PathBuf::from("/usr/lib/clang"),
        PathBuf::from("/usr/local/lib/clang"),
    ]
    .into_iter()
    .chain(llvm_dirs().map(|p| p.join("lib/clang")))
    .any(|dir| {
        entries(&dir)
            .iter()
            .any(|version| version.join("include/stddef.h").exists())
    })
}

/// Debian's versioned LLVM installations, `/usr/lib/llvm-<version>`.
fn llvm_dirs() -> impl Iterator<Item = PathBuf> {
    entries(Path::new("/usr/lib"))
        .into_iter()
        .filter(|p| p.to_string_lossy().starts_with("/usr/lib/llvm-"))
}

/// `python3 -m venv` alone is not enough: without Debian's python3-venv
/// the module exists but cannot install pip into the new environment.
fn has_python_venv() -> bool {
    runs("python3", &["-m", "venv", "--help"]) && runs("python3", &["-m", "ensurepip", "--version"])
}

fn has_node() -> bool {
    runs("node", &["--version"])
}

fn has_npm() -> bool {
    runs("npm", &["--version"])
}

fn has_promtool() -> bool {
    runs("promtool", &["--version"])
}

/// On PATH, or where Debian puts it (`/usr/sbin`, not on a non-root
/// user's PATH; `sequin-pgtemp` looks there too).
fn has_nats_server() -> bool {
    runs("nats-server", &["--version"]) || runs("/usr/sbin/nats-server", &["--version"])
}

/// Whether dpkg lists `package` as installed (not merely known or removed
/// with its configuration left behind).
fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", package])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout == b"installed")
}

/// The entries of `dir` (none when it is missing or unreadable).
fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn runs(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
