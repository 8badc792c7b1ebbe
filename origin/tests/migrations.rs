//! Migrations are additive (#32 item 7): every migration runs before the old tasks are replaced
//! and stays through a rollback, so the release before it must keep working on the migrated
//! schema. A migration that drops, renames, retypes or tightens what an older release reads fails
//! here unless it names the release that stopped using it (`-- contract: <release>`): the expand,
//! deploy, contract sequence of docs/deploy.md.

use origin::db::schema::contracting_statements;

#[test]
fn migrations_are_additive() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let sql = std::fs::read_to_string(&path).unwrap();
        let found = contracting_statements(&sql);
        assert!(
            found.is_empty(),
            "{}: not additive (an older release reading the schema breaks); add \
             `-- contract: <the release that stopped using it>` once that release is gone: {found:#?}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 4, "{checked} migrations read");
}

#[test]
fn each_kind_of_contraction_is_caught_unless_a_release_is_named() {
    for sql in [
        "DROP TABLE numbers;",
        "ALTER TABLE prices DROP COLUMN stock;",
        "ALTER TABLE prices RENAME COLUMN stock TO quantity;",
        "ALTER TABLE prices RENAME TO offers;",
        "ALTER TABLE prices ALTER COLUMN stock TYPE bigint;",
        "ALTER TABLE users ALTER COLUMN email SET NOT NULL;",
        "ALTER TABLE users ADD COLUMN tier TEXT NOT NULL;",
        "ALTER TABLE users ADD COLUMN a INT, ADD COLUMN tier TEXT NOT NULL;",
        "DELETE FROM sync_runs;",
        "TRUNCATE activations;",
        "DROP TYPE activation_status;",
    ] {
        assert_eq!(contracting_statements(sql).len(), 1, "{sql}");
        let named = format!("-- contract: origin 0.4.0 stopped reading it\n{sql}");
        assert!(contracting_statements(&named).is_empty(), "{sql}");
    }
    for additive in [
        "CREATE TABLE x (id bigint PRIMARY KEY, note text NOT NULL);",
        "ALTER TABLE users ADD COLUMN tier TEXT NOT NULL DEFAULT 'basic';",
        "ALTER TABLE users ADD COLUMN note TEXT;",
        "CREATE INDEX CONCURRENTLY x ON prices (stock);",
        "-- DROP TABLE numbers; (a comment)\nCREATE TABLE y (id int);",
        "ALTER TABLE prices ALTER COLUMN stock SET DEFAULT 0;",
    ] {
        assert!(contracting_statements(additive).is_empty(), "{additive}");
    }
}
