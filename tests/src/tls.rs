//! Certificates made at run time (rcgen), and the TLS back ends the suites run against.
//!
//! [`write_set`] writes the whole test set into a directory (the `make-certs` binary calls it
//! before `make test` starts its TLS servers):
//!
//! | file | what it is |
//! |---|---|
//! | `ca.pem`, `ca.key` | the test CA every TLS server of the suites is signed by |
//! | `server.pem`, `server.key` | `localhost`, `127.0.0.1`, `::1`, signed by the CA (server and client use: cluster nodes present it to each other) |
//! | `client.pem`, `client.key` | a client certificate (CN `nexnum-origin`) for mutual TLS |
//! | `other-ca.pem`, `other.pem`, `other.key` | a second, unrelated CA and a `localhost` certificate it signed |
//! | `expired.pem`, `expired.key` | `localhost`, signed by the CA, expired in 2021 |
//! | `wronghost.pem`, `wronghost.key` | signed by the CA for `db.example.internal` only |
//! | `password` | the password of the suites' PostgreSQL role and Redis ACL user |
//!
//! [`TlsEnv`] is what a TLS run of the suites found in the environment (`TEST_TLS_DIR`): private
//! Redis servers and clusters then start TLS-only with an ACL user, as the shared ones do.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};

/// A certificate and its key, PEM.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A certificate authority that signs leaves.
pub struct Authority {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    pub fn new(name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = date_time_ymd(2024, 1, 1);
        params.not_after = date_time_ymd(2124, 1, 1);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign CA");
        Authority { cert_pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// A leaf for `names` (DNS names or IP addresses), valid from 2024 to 2124 unless `expired`
    /// (then 2020 to 2021). Usable by servers and clients alike.
    pub fn leaf(&self, common_name: &str, names: &[&str], expired: bool) -> Pem {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages =
            vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        } else {
            params.not_before = date_time_ymd(2024, 1, 1);
            params.not_after = date_time_ymd(2124, 1, 1);
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Pem { cert: cert.pem(), key: key.serialize_pem() }
    }
}

/// The names every test server answers to.
pub const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Writes the whole set (see the module documentation) into `dir`. Keeps an existing complete
/// set, so servers already running with it stay valid; returns whether it wrote a new one.
pub fn write_set(dir: &Path) -> std::io::Result<bool> {
    const FILES: [&str; 14] = [
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "client.pem",
        "client.key",
        "other-ca.pem",
        "other.pem",
        "other.key",
        "expired.pem",
        "expired.key",
        "wronghost.pem",
        "wronghost.key",
        "password",
    ];
    if FILES.iter().all(|f| dir.join(f).exists()) {
        return Ok(false);
    }
    std::fs::create_dir_all(dir)?;
    let ca = Authority::new("NexNum test CA");
    let other = Authority::new("An unrelated CA");
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text);
    let pair = |stem: &str, pem: &Pem| -> std::io::Result<()> {
        write(&format!("{stem}.pem"), &pem.cert)?;
        write_key(&dir.join(format!("{stem}.key")), &pem.key)
    };
    write("ca.pem", &ca.cert_pem)?;
    write_key(&dir.join("ca.key"), &ca.issuer.key().serialize_pem())?;
    pair("server", &ca.leaf("localhost", &LOCAL_NAMES, false))?;
    pair("client", &ca.leaf("nexnum-origin", &["nexnum-origin"], false))?;
    write("other-ca.pem", &other.cert_pem)?;
    pair("other", &other.leaf("localhost", &LOCAL_NAMES, false))?;
    pair("expired", &ca.leaf("localhost", &LOCAL_NAMES, true))?;
    pair("wronghost", &ca.leaf("db.example.internal", &["db.example.internal"], false))?;
    // A password without URL-special characters, fresh for each set.
    write("password", &uuid::Uuid::new_v4().simple().to_string())?;
    Ok(true)
}

/// A private key, readable by its owner only (PostgreSQL refuses a key others can read).
fn write_key(path: &Path, pem: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, pem)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// The TLS back end of a suite run: `TEST_TLS_DIR` names the certificate set, and private Redis
/// servers start TLS-only with the ACL user [`REDIS_USER`] and the set's password.
#[derive(Clone, Debug)]
pub struct TlsEnv {
    pub dir: PathBuf,
    pub password: String,
}

/// The ACL user of the suites' TLS Redis servers (the `default` user is off).
pub const REDIS_USER: &str = "nexnum";

impl TlsEnv {
    /// `Some` in a TLS run (`TEST_TLS_DIR` set, as `make test` sets it for those passes).
    pub fn from_env() -> Option<TlsEnv> {
        let dir = PathBuf::from(std::env::var_os("TEST_TLS_DIR")?);
        let password = std::fs::read_to_string(dir.join("password"))
            .unwrap_or_else(|e| panic!("{}/password: {e}", dir.display()))
            .trim()
            .to_owned();
        Some(TlsEnv { dir, password })
    }

    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// `redis-server` arguments for a TLS-only server on `port` with the ACL user.
    pub fn redis_server_args(&self, port: u16) -> Vec<String> {
        let mut args: Vec<String> = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &self.file("server.pem"),
            "--tls-key-file",
            &self.file("server.key"),
            "--tls-ca-cert-file",
            &self.file("ca.pem"),
            "--tls-auth-clients",
            "optional",
            "--user",
            "default",
            "off",
            "--user",
            REDIS_USER,
            "on",
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend([format!(">{}", self.password), "~*".into(), "&*".into(), "+@all".into()]);
        args
    }

    /// The URL of a TLS server on `port`, with the ACL user's credentials.
    pub fn redis_url(&self, port: u16) -> String {
        format!("rediss://{REDIS_USER}:{}@127.0.0.1:{port}", self.password)
    }

    /// `redis-cli` arguments that reach such a server.
    pub fn redis_cli_args(&self) -> Vec<String> {
        vec![
            "--tls".into(),
            "--cacert".into(),
            self.file("ca.pem"),
            "--user".into(),
            REDIS_USER.into(),
            "--pass".into(),
            self.password.clone(),
            "--no-auth-warning".into(),
        ]
    }
}
