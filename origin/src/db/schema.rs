//! The schema check: the migrations this binary carries ([`crate::MIGRATOR`]) against the ones
//! the database has applied (sqlx's `_sqlx_migrations`).
//!
//! - **Behind** (a migration of the binary is not applied, or one failed half-way): `serve`
//!   refuses to start and names it; the fix is `origin migrate`.
//! - **Changed** (an applied migration's checksum differs from the binary's): refused too; the
//!   file was edited after it ran, so the schema is not what the code expects.
//! - **Ahead** (the database has migrations this binary does not know): fine, and expected
//!   during a rolling deploy, when the new binary's migrations run before the old tasks are
//!   replaced. That is safe only for additive migrations (see `docs/deploy.md`).

use sqlx::migrate::Migrator;

use super::Db;

/// What the database holds compared with the binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaStatus {
    /// The newest migration the database has applied successfully (0: none).
    pub applied: i64,
    /// The newest migration the binary carries.
    pub expected: i64,
    /// The binary's migrations the database lacks (or that failed), oldest first.
    pub missing: Vec<(i64, String)>,
    /// Applied migrations whose checksum differs from the binary's copy.
    pub changed: Vec<i64>,
    /// Applied migrations the binary does not carry (a newer binary ran them).
    pub ahead: Vec<i64>,
}

impl SchemaStatus {
    /// Whether this binary may serve on the database.
    pub fn is_current(&self) -> bool {
        self.missing.is_empty() && self.changed.is_empty()
    }

    /// One line for logs, `/readyz` and `origin check`.
    pub fn describe(&self) -> String {
        if let Some((version, description)) = self.missing.first() {
            let more = match self.missing.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            return format!(
                "the database is behind this binary: migration {version} ({description}) is not \
                 applied{more}; run `origin migrate` first"
            );
        }
        if let Some(version) = self.changed.first() {
            return format!(
                "migration {version} differs from the one the database applied (edited after it \
                 ran?)"
            );
        }
        if self.ahead.is_empty() {
            format!("current (migration {})", self.applied)
        } else {
            format!(
                "current, and {} migration(s) ahead of this binary (newest {}): a newer binary \
                 migrated it",
                self.ahead.len(),
                self.applied
            )
        }
    }
}

/// Reads `_sqlx_migrations` and compares it with `migrator`. A database never migrated (no
/// table) lacks every migration.
pub async fn status(db: &Db, migrator: &Migrator) -> Result<SchemaStatus, sqlx::Error> {
    let mut conn = db.conn().await?;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .persistent(db.persistent())
        .fetch_one(&mut *conn)
        .await?;
    let applied: Vec<(i64, bool, Vec<u8>)> = if exists {
        sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
            .persistent(db.persistent())
            .fetch_all(&mut *conn)
            .await?
    } else {
        Vec::new()
    };
    conn.done().await?;
    Ok(compare(migrator, &applied))
}

/// The comparison itself, on rows of `(version, success, checksum)`.
pub fn compare(migrator: &Migrator, applied: &[(i64, bool, Vec<u8>)]) -> SchemaStatus {
    let ours: Vec<_> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .collect();
    let mut status = SchemaStatus {
        applied: applied
            .iter()
            .filter(|(_, ok, _)| *ok)
            .map(|(v, _, _)| *v)
            .max()
            .unwrap_or(0),
        expected: ours.iter().map(|m| m.version).max().unwrap_or(0),
        missing: Vec::new(),
        changed: Vec::new(),
        ahead: Vec::new(),
    };
    for m in &ours {
        match applied.iter().find(|(v, _, _)| *v == m.version) {
            Some((_, true, checksum)) if *checksum == *m.checksum => {}
            Some((_, true, _)) => status.changed.push(m.version),
            _ => status.missing.push((m.version, m.description.to_string())),
        }
    }
    status.ahead = applied
        .iter()
        .filter(|(v, _, _)| !ours.iter().any(|m| m.version == *v))
        .map(|(v, _, _)| *v)
        .collect();
    status
}

/// The statements of a migration that are not additive: each would break the release before it,
/// which keeps serving on the migrated database until the roll is done (and after a rollback).
/// A migration may contract only once the release that stopped using what it removes is the
/// oldest one running, and says so with a line `-- contract: <that release>`; without it, every
/// such statement is listed (the CI check `migrations_are_additive` fails on them).
///
/// Not additive: dropping or renaming a table, column, type, view or schema; changing a column's
/// type; `SET NOT NULL`; a new `NOT NULL` column without a default; deleting rows (`DELETE`,
/// `TRUNCATE`).
pub fn contracting_statements(sql: &str) -> Vec<String> {
    if sql.lines().any(|l| {
        l.trim_start()
            .to_ascii_lowercase()
            .starts_with("-- contract:")
    }) {
        return Vec::new();
    }
    let code: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = Vec::new();
    for statement in code.split(';') {
        let words: Vec<String> = statement
            .split_whitespace()
            .map(|w| {
                w.trim_matches(|c| c == ',' || c == '(' || c == ')')
                    .to_ascii_uppercase()
            })
            .collect();
        let has = |seq: &[&str]| words.windows(seq.len()).any(|w| w == seq);
        let not_null_without_default = words.windows(2).enumerate().any(|(i, w)| {
            w == ["ADD", "COLUMN"] && {
                let rest = &words[i..];
                let end = rest
                    .iter()
                    .skip(2)
                    .position(|x| x == "ADD")
                    .map_or(rest.len(), |p| p + 2);
                let column = &rest[..end];
                column.windows(2).any(|x| x == ["NOT", "NULL"])
                    && !column.iter().any(|x| x == "DEFAULT")
            }
        });
        let breaking = has(&["DROP", "TABLE"])
            || has(&["DROP", "COLUMN"])
            || has(&["DROP", "TYPE"])
            || has(&["DROP", "VIEW"])
            || has(&["DROP", "SCHEMA"])
            || has(&["RENAME"])
            || (has(&["ALTER", "COLUMN"]) && (has(&["TYPE"]) || has(&["SET", "DATA", "TYPE"])))
            || has(&["SET", "NOT", "NULL"])
            || not_null_without_default
            || words
                .first()
                .is_some_and(|w| w == "DELETE" || w == "TRUNCATE");
        if breaking {
            found.push(words.join(" "));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(up_to: usize) -> Vec<(i64, bool, Vec<u8>)> {
        crate::MIGRATOR
            .iter()
            .take(up_to)
            .map(|m| (m.version, true, m.checksum.to_vec()))
            .collect()
    }

    #[test]
    fn behind_current_ahead_and_changed() {
        let all = crate::MIGRATOR.iter().count();
        let current = compare(&crate::MIGRATOR, &rows(all));
        assert!(current.is_current(), "{current:?}");
        assert!(current.describe().starts_with("current"));

        let behind = compare(&crate::MIGRATOR, &rows(all - 1));
        assert!(!behind.is_current());
        let last = crate::MIGRATOR.iter().last().unwrap();
        assert_eq!(
            behind.missing,
            vec![(last.version, last.description.to_string())]
        );
        assert!(behind.describe().contains(&last.version.to_string()));
        assert!(behind.describe().contains("origin migrate"));

        let never = compare(&crate::MIGRATOR, &[]);
        assert_eq!(never.missing.len(), all);

        let mut failed = rows(all);
        failed[all - 1].1 = false;
        assert!(
            !compare(&crate::MIGRATOR, &failed).is_current(),
            "a failed one is missing"
        );

        let mut edited = rows(all);
        edited[0].2[0] ^= 1;
        let edited = compare(&crate::MIGRATOR, &edited);
        assert_eq!(
            edited.changed,
            vec![crate::MIGRATOR.iter().next().unwrap().version]
        );
        assert!(!edited.is_current());

        let mut newer = rows(all);
        newer.push((99_991_231_000_000, true, vec![0]));
        let newer = compare(&crate::MIGRATOR, &newer);
        assert!(
            newer.is_current(),
            "a newer binary's migration does not stop this one"
        );
        assert_eq!(newer.ahead, vec![99_991_231_000_000]);
    }
}
