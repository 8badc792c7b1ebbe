//! The README's settings table is `config::markdown_table()` of the list `config.rs` reads, so
//! a setting cannot be documented and not read, read and not documented, or documented with the
//! wrong default. (`origin env` prints the table to paste.)

#[test]
fn the_readme_settings_table_is_the_one_config_reads() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let begin = "<!-- settings:begin -->\n";
    let start = readme.find(begin).expect("the settings:begin marker") + begin.len();
    let end = readme
        .find("<!-- settings:end -->")
        .expect("the settings:end marker");
    assert_eq!(
        &readme[start..end],
        origin::config::markdown_table(),
        "README.md's settings table is stale: run scripts/readme-settings.sh (make settings)"
    );
}
