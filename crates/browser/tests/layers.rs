//! The browser crate's modules form layers: no module imports (with `use crate::...`) a module
//! that imports it back, directly or through others. Native only: it reads the sources.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name -> modules it names in `use crate::` lines (`use crate::{a, b::c}` included).
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).expect("a readable source file");
        let uses = uses_of(&name, &text);
        graph.insert(name, uses);
    }
    graph
}

/// The modules `text` (the source of module `name`) names in `use crate::` statements.
fn uses_of(name: &str, text: &str) -> BTreeSet<String> {
    let mut uses = BTreeSet::new();
    // Statements, not lines: `use crate::{a,\n b::C};` spans several.
    for stmt in text.split(';') {
        let stmt = stmt.trim_start();
        let stmt = stmt
            .lines()
            .skip_while(|l| l.trim_start().starts_with("//") || l.trim().starts_with("#["))
            .collect::<Vec<_>>()
            .join(" ");
        let stmt = stmt.trim();
        let Some(rest) = stmt
            .strip_prefix("use crate::")
            .or_else(|| stmt.strip_prefix("pub use crate::"))
            .or_else(|| stmt.strip_prefix("pub(crate) use crate::"))
        else {
            continue;
        };
        // The first path segment of each top-level item: `{a::B, c}` -> a, c.
        let rest = rest.trim_start_matches('{');
        let mut depth = 0;
        let mut start = true;
        let mut module = String::new();
        for ch in rest.chars() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    if !module.is_empty() && module != name {
                        uses.insert(std::mem::take(&mut module));
                    }
                    module.clear();
                    start = true;
                    continue;
                }
                _ => {}
            }
            if start {
                if ch.is_alphanumeric() || ch == '_' {
                    module.push(ch);
                } else if !module.is_empty() {
                    if module != name {
                        uses.insert(std::mem::take(&mut module));
                    }
                    module.clear();
                    start = false;
                }
            }
        }
        if !module.is_empty() && module != name {
            uses.insert(module);
        }
    }
    uses
}

fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_owned()];
    while let Some(m) = stack.pop() {
        if m == to {
            return true;
        }
        if seen.insert(m.clone()) {
            stack.extend(graph.get(&m).into_iter().flatten().cloned());
        }
    }
    false
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let graph = imports();
    assert!(graph.contains_key("driver") && graph.contains_key("api"));
    let mut cycles = Vec::new();
    for (module, uses) in &graph {
        for used in uses {
            if reaches(&graph, used, module) {
                cycles.push(format!("{module} -> {used} -> ... -> {module}"));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}

#[test]
fn the_wrappers_know_nothing_of_the_driver() {
    let graph = imports();
    for wrapper in [
        "bridge", "link", "codes", "timer", "views", "events", "content", "store", "stream",
    ] {
        assert!(
            !reaches(&graph, wrapper, "driver"),
            "{wrapper} reaches the driver: {:?}",
            graph.get(wrapper)
        );
    }
}

#[test]
fn the_checker_sees_multi_line_uses_and_a_planted_cycle() {
    let used = uses_of(
        "x",
        "use crate::a::B;\n// use crate::ignored;\nuse crate::{c,\n    d::{E, F}, x};\npub(crate) use crate::z;",
    );
    assert_eq!(
        used.into_iter().collect::<Vec<_>>(),
        vec!["a", "c", "d", "z"]
    );
    let mut g = BTreeMap::new();
    g.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    g.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert!(reaches(&g, "b", "a") && reaches(&g, "a", "b"));
    assert!(!reaches(&g, "a", "c"));
}
