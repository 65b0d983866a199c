//! Test certificates made with rcgen: a CA, server certificates for the
//! names a test wants, and client certificates (for pg_hba's `cert`
//! method). Keys are ECDSA P-256; nothing here is fit for production.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::{Error, Result};

fn rcgen_error(what: &str) -> impl FnOnce(rcgen::Error) -> Error + '_ {
    move |e| Error::Command {
        what: format!("making a test certificate ({what})"),
        detail: e.to_string(),
    }
}

/// A certificate and its private key, in PEM.
#[derive(Clone, Debug)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl CertifiedKey {
    /// Writes `<stem>.crt` and `<stem>.key` (mode 0600) into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf)> {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem).map_err(crate::io("writing a test certificate"))?;
        write_private(&key, &self.key_pem)?;
        Ok((cert, key))
    }
}

/// Writes a file only its owner may read (Postgres and libpq refuse keys
/// that others can read).
pub(crate) fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(crate::io("writing a private key"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(crate::io("restricting a private key"))
}

/// A certificate authority for tests.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    cert_pem: String,
}

impl TestCa {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Result<TestCa> {
        let key = KeyPair::generate().map_err(rcgen_error("CA key"))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error("CA"))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).map_err(rcgen_error("CA"))?;
        Ok(TestCa {
            params,
            key,
            cert_pem: cert.pem(),
        })
    }

    /// The CA certificate (what `sslrootcert` points at).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate valid for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Result<CertifiedKey> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).map_err(rcgen_error("server"))?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate whose common name is `user` (pg_hba `cert`
    /// maps it to the role of that name).
    pub fn client(&self, user: &str) -> Result<CertifiedKey> {
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error("client"))?;
        params.distinguished_name.push(DnType::CommonName, user);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Result<CertifiedKey> {
        let key = KeyPair::generate().map_err(rcgen_error("key"))?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(rcgen_error("signing"))?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
