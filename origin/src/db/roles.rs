//! Least privilege in PostgreSQL: the schema belongs to its owner (the role of
//! `MIGRATE_DATABASE_URL`, which only `origin migrate`, `seed` and `admin` use), and the serving
//! tasks connect as a role that can read and write rows and nothing else (`DATABASE_URL`).
//!
//! What the serving role may do, and why that is all:
//! - `SELECT`, `INSERT`, `UPDATE` on every table: the origin never deletes a row (a purchase, a
//!   refund, a sync run is a row written; a price taken off sale is stock 0), so no `DELETE`;
//! - read the migration log (`_sqlx_migrations`) for its schema check, never write it;
//! - use the sequences of the tables it inserts into; create temporary tables (the sync's
//!   staging table lives for one transaction);
//! - nothing on the schema itself: no `CREATE`, `ALTER`, `DROP` or `TRUNCATE`, so a serving
//!   task that is compromised, or a bug, cannot change or empty the catalog's structure.
//!
//! Tables a later migration creates are granted the same way by default privileges, so a release
//! does not have to remember. `origin grant --role <name>` applies this (as the owner), and the
//! test harness connects every in-process origin as such a role.

use sqlx::{Connection, Executor, PgConnection};

/// A role name we are willing to splice into SQL (identifiers cannot be bound as parameters).
pub fn valid_role(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// The grants, in order (`{role}` and `{db}` are replaced by quoted identifiers).
const GRANTS: &[&str] = &[
    "GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {role}",
    "GRANT USAGE ON SCHEMA public TO {role}",
    "REVOKE CREATE ON SCHEMA public FROM {role}",
    "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {role}",
    "REVOKE INSERT, UPDATE ON _sqlx_migrations FROM {role}",
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE ON TABLES TO {role}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {role}",
];

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Creates `role` (able to log in, with `password`) unless it exists; sets the password when it
/// does. Roles belong to the whole server, so this needs a role allowed to create roles.
pub async fn ensure_role(
    owner: &mut PgConnection,
    role: &str,
    password: Option<&str>,
) -> Result<(), sqlx::Error> {
    if !valid_role(role) {
        return Err(sqlx::Error::Protocol(format!(
            "{role:?} is not a role name (a-z, 0-9, _)"
        )));
    }
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(role)
            .fetch_one(&mut *owner)
            .await?;
    let password = password.map(|p| format!(" PASSWORD {}", quote_literal(p)));
    let sql = if exists {
        match password {
            Some(p) => format!("ALTER ROLE {} LOGIN{p}", quote_ident(role)),
            None => return Ok(()),
        }
    } else {
        format!(
            "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE{}",
            quote_ident(role),
            password.unwrap_or_default()
        )
    };
    match owner.execute(sql.as_str()).await {
        Ok(_) => Ok(()),
        // Created or altered concurrently by another process: it exists, with this password.
        Err(e) if is_concurrent(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `duplicate_object`, a unique violation on the catalog, or "tuple concurrently updated": what
/// two processes ensuring the same role at once see.
fn is_concurrent(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "42710" || c == "23505" || c == "XX000")
}

/// Grants `role` what serving needs on the connected database, and nothing more; idempotent.
pub async fn grant_serving(owner: &mut PgConnection, role: &str) -> Result<(), sqlx::Error> {
    if !valid_role(role) {
        return Err(sqlx::Error::Protocol(format!(
            "{role:?} is not a role name (a-z, 0-9, _)"
        )));
    }
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut *owner)
        .await?;
    let mut tx = owner.begin().await?;
    for grant in GRANTS {
        let sql = grant
            .replace("{role}", &quote_ident(role))
            .replace("{db}", &quote_ident(&db));
        tx.execute(sql.as_str()).await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_spliced() {
        for good in ["nexnum_origin", "_x", "a1"] {
            assert!(valid_role(good), "{good}");
        }
        for bad in [
            "",
            "Nexnum",
            "a-b",
            "a;drop",
            "1a",
            "a b",
            "\"x\"",
            &"a".repeat(64),
        ] {
            assert!(!valid_role(bad), "{bad}");
        }
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
