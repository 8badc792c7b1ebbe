//! A private PostgreSQL of a test's own (`initdb` into a temporary directory, a spare port), for
//! tests that must change what the server presents: its certificate, whether it speaks TLS at
//! all, what it asks of clients. Over TCP it accepts only `hostssl … scram-sha-256`; the test
//! administers it over its Unix socket (trust, in the private directory). Stopped on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sqlx::Connection;

/// The password of the `postgres` role.
pub const PASSWORD: &str = "pg-private-password-7f3a";

pub struct PostgresServer {
    pub port: u16,
    dir: PathBuf,
    runas: Vec<String>,
    bin: PathBuf,
}

fn pg_bin() -> PathBuf {
    for dir in std::fs::read_dir("/usr/lib/postgresql").into_iter().flatten().flatten() {
        let bin = dir.path().join("bin");
        if bin.join("initdb").exists() {
            return bin;
        }
    }
    PathBuf::from("/usr/bin")
}

impl PostgresServer {
    /// Starts with TLS on, presenting `cert`/`key` (PEM files), `log_connections` and
    /// `log_statement = all` so a test can read what reached it.
    pub fn start(cert: &Path, key: &Path) -> PostgresServer {
        let port = crate::spare_port();
        let dir = std::env::temp_dir().join(format!("nexnum-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("data")).expect("pg dir");
        let runas: Vec<String> = if is_root() {
            // PostgreSQL refuses to run as root.
            let status = Command::new("chown").args(["-R", "postgres"]).arg(&dir).status();
            assert!(status.is_ok_and(|s| s.success()), "chown to postgres");
            ["runuser", "-u", "postgres", "--"].map(str::to_owned).to_vec()
        } else {
            Vec::new()
        };
        let server = PostgresServer { port, dir, runas, bin: pg_bin() };
        std::fs::write(server.dir.join("pwfile"), PASSWORD).expect("pwfile");
        server.chown(&server.dir.join("pwfile"));
        let out = server
            .command("initdb")
            .arg("-D")
            .arg(server.data())
            .args(["-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", server.dir.join("pwfile").display()))
            .output()
            .expect("initdb (Debian package postgresql)");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        server.set_hba("hostssl all all 127.0.0.1/32 scram-sha-256");
        server.install_certificate(cert, key);
        // In the file, not on the command line, so `ALTER SYSTEM` can change them later.
        let conf = server.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str(
            "\nssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n\
             log_connections = on\nlog_statement = 'all'\n",
        );
        std::fs::write(&conf, text).expect("postgresql.conf");
        server.launch();
        server
    }

    /// `pg_ctl start` (again, after [`PostgresServer::stop_immediate`]).
    pub fn launch(&self) {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.log_path())
            .arg("-w")
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1",
                self.port,
                self.dir.display()
            ))
            .arg("start")
            .output()
            .expect("pg_ctl");
        assert!(out.status.success(), "pg_ctl start: {}", self.log());
    }

    /// `pg_ctl stop -m immediate`: the server goes at once, as in a crash.
    pub fn stop_immediate(&self) {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .expect("pg_ctl");
        assert!(out.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn command(&self, tool: &str) -> Command {
        let bin = self.bin.join(tool);
        match self.runas.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        }
    }

    fn chown(&self, path: &Path) {
        if !self.runas.is_empty() {
            let _ = Command::new("chown").arg("postgres").arg(path).status();
        }
    }

    /// Replaces `pg_hba.conf`'s TCP line (the Unix socket stays trusted for the test).
    pub fn set_hba(&self, tcp_line: &str) {
        let text = format!("local all all trust\n{tcp_line}\nhost all all all reject\n");
        let path = self.data().join("pg_hba.conf");
        std::fs::write(&path, text).expect("pg_hba.conf");
        self.chown(&path);
    }

    /// Copies a certificate and key in as the server's (`server.pem`, `server.key`).
    pub fn install_certificate(&self, cert: &Path, key: &Path) {
        for (from, to) in [(cert, "server.pem"), (key, "server.key")] {
            let dest = self.data().join(to);
            std::fs::copy(from, &dest).expect("copy certificate");
            self.chown(&dest);
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600));
        }
    }

    /// Copies a CA in as `ca.pem` (for `clientcert=` lines and `ssl_ca_file`).
    pub fn install_ca(&self, ca: &Path) {
        let dest = self.data().join("ca.pem");
        std::fs::copy(ca, &dest).expect("copy CA");
        self.chown(&dest);
    }

    /// The Unix-socket URL the test administers the server with.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@localhost:{}/postgres?host={}", self.port, self.dir.display())
    }

    /// Runs SQL as the superuser over the Unix socket.
    pub async fn sql(&self, statement: &str) {
        let mut conn = sqlx::PgConnection::connect(&self.admin_url()).await.expect("admin connect");
        sqlx::query(statement).execute(&mut conn).await.expect(statement);
        let _ = conn.close().await;
    }

    /// Applies changed settings, `pg_hba.conf` and certificates (`pg_reload_conf`), and ends
    /// every TCP session so the next connection meets them.
    pub async fn reload(&self) {
        self.sql("SELECT pg_reload_conf()").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE client_addr IS NOT NULL AND pid <> pg_backend_pid()",
        )
        .await;
    }

    /// A TCP URL for `database` as the `postgres` role with `password`, plus `query`.
    pub fn url(&self, host: &str, password: &str, database: &str, query: &str) -> String {
        format!("postgres://postgres:{password}@{host}:{}/{database}?{query}", self.port)
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
