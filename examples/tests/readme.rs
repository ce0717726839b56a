//! The README's walkthrough ("A venue and a writer in your own crate") shows the code of this
//! crate, not a copy that could drift: every Rust block in it is in one of the crate's
//! sources, and its config is valid for the venue and writer it registers.

use feeder_core::prelude::*;

const README: &str = include_str!("../../README.md");
const SECTION: &str = "## A venue and a writer in your own crate";

const SOURCES: &[&str] = &[
    include_str!("../src/toy.rs"),
    include_str!("../src/append_log.rs"),
    include_str!("../examples/own_crate.rs"),
];

/// The fenced blocks of `lang` in the walkthrough.
fn blocks(lang: &str) -> Vec<String> {
    let start = README.find(SECTION).expect("the walkthrough section");
    let rest = &README[start + SECTION.len()..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let fence = format!("```{lang}\n");
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = section[at..].find(&fence) {
        let body = at + i + fence.len();
        let end = body + section[body..].find("```").expect("a closed block");
        out.push(section[body..end].to_owned());
        at = end + 3;
    }
    out
}

/// `text` without the indentation common to its lines, as a block cut from a file shows it.
fn lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn every_rust_block_of_the_walkthrough_is_compiled_code_of_this_crate() {
    let rust = blocks("rust");
    assert!(rust.len() >= 5, "{} blocks", rust.len());
    for block in rust {
        let want = lines(&block);
        let found = SOURCES.iter().any(|src| {
            let have = lines(src);
            have.windows(want.len()).any(|w| w == want.as_slice())
        });
        assert!(found, "not in the sources:\n{block}");
    }
}

#[test]
fn the_walkthrough_config_is_valid_for_its_venue_and_writer() {
    let yaml = blocks("yaml");
    assert_eq!(yaml.len(), 1);
    let mut registry = Registry::new();
    registry
        .register_venue(feeder_examples::toy::VENUE)
        .register_writer("append_log", feeder_examples::append_log::AppendLogFactory);
    let config = Config::from_yaml_str_with_env(&yaml[0], &|_| None).expect("parses");
    Feeder::validate(&config, &registry).expect("valid");
}
