//! The module map in the README is the code's: each top-level module's
//! imports (`crate::NAME`, test code excluded) must be exactly the list the
//! README's "How it is built" gives, and the layers must import only
//! downward — `http` nothing, the pure layers neither `proxy` nor
//! `upstream`. Reads the sources; no build of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

const PURE: &[&str] = &["http", "config", "route", "rewrite", "rules", "balancer"];

/// Top-level module name → the crate modules it uses.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut map = BTreeMap::new();
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if name == "lib" || name == "main" {
            continue;
        }
        let mut uses = BTreeSet::new();
        for file in rust_files(&path) {
            if file.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let text = fs::read_to_string(&file).unwrap();
            // Test modules sit at the end of a file, after `#[cfg(test)]`.
            let code = match text.find("#[cfg(test)]\nmod tests") {
                Some(i) => &text[..i],
                None => &text,
            };
            for line in code.lines() {
                // Comments may name any module; only code imports.
                let line = line.split("//").next().unwrap_or("");
                for (i, _) in line.match_indices("crate::") {
                    let used: String = line[i + "crate::".len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !used.is_empty() && used != name {
                        uses.insert(used);
                    }
                }
            }
        }
        map.insert(name, uses);
    }
    map
}

fn rust_files(path: &Path) -> Vec<std::path::PathBuf> {
    if path.is_file() {
        return if path.extension().is_some_and(|e| e == "rs") {
            vec![path.to_path_buf()]
        } else {
            vec![]
        };
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(path).unwrap() {
        files.extend(rust_files(&entry.unwrap().path()));
    }
    files
}

/// The README's list: lines "  NAME -> a, b" (or "-") in the block after
/// the line "module graph (crate::X uses, tests excluded):".
fn readme_list() -> BTreeMap<String, BTreeSet<String>> {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("module graph (crate::X uses, tests excluded):\n")
        .expect("the README's design section lists the module graph");
    let mut map = BTreeMap::new();
    for line in readme[start..].lines().skip(1) {
        let Some((name, uses)) = line.trim().split_once(" -> ") else {
            break;
        };
        let uses = uses
            .split(", ")
            .filter(|u| *u != "-")
            .map(str::to_string)
            .collect();
        map.insert(name.to_string(), uses);
    }
    map
}

#[test]
fn the_readme_lists_each_modules_imports_as_they_are() {
    let actual = imports();
    let listed = readme_list();
    let render = |m: &BTreeMap<String, BTreeSet<String>>| {
        m.iter()
            .map(|(k, v)| {
                let v: Vec<_> = v.iter().map(String::as_str).collect();
                format!(
                    "  {k} -> {}",
                    if v.is_empty() {
                        "-".to_string()
                    } else {
                        v.join(", ")
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        render(&listed),
        render(&actual),
        "README's module graph (left) against the code (right)"
    );
}

#[test]
fn layers_import_only_downward() {
    let map = imports();
    assert!(map["http"].is_empty(), "http is a leaf: {:?}", map["http"]);
    for layer in PURE {
        for io in ["proxy", "upstream", "ops"] {
            assert!(!map[*layer].contains(io), "{layer} (pure) imports {io}");
        }
    }
    // No cycle: repeatedly remove modules that import nothing left.
    let mut left = map.clone();
    while !left.is_empty() {
        let leaves: Vec<String> = left
            .iter()
            .filter(|(_, uses)| uses.iter().all(|u| !left.contains_key(u)))
            .map(|(k, _)| k.clone())
            .collect();
        assert!(
            !leaves.is_empty(),
            "a cycle among {:?}",
            left.keys().collect::<Vec<_>>()
        );
        for leaf in leaves {
            left.remove(&leaf);
        }
    }
}
