//! The layering rules of issue 8, checked on the source text:
//!
//! - no module of `crates/node`, `crates/browser`, `crates/onion`, `crates/rendezvous`,
//!   `crates/ordb`, `crates/wire`, `crates/kad` or `bridge` names
//!   (in a `use crate::` line, a `crate::module::` path, or a doc link) a module that names it
//!   back, directly or through others: the top-level modules of each crate form an acyclic
//!   graph;
//! - there is one `impl Node`, in `crates/node/src/node.rs`, and one `impl Rendezvous`, in
//!   `crates/rendezvous/src/rendezvous.rs`.
//!
//! Modules are the top-level ones (`src/foo.rs` and everything under `src/foo/`); a child using
//! its own parent is not an edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the workspace root")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`None` for `lib.rs`/`main.rs`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    let name = first.trim_end_matches(".rs").to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// `use crate::a::...`, `use crate::{a, b::c}` -> the first segments.
fn imported_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    // Join `use` statements that span lines, up to their `;`.
    let mut stmt = String::new();
    let mut in_use = false;
    for line in text.lines() {
        let t = line.trim_start();
        if !in_use
            && (t.starts_with("use crate::")
                || t.starts_with("pub use crate::")
                || t.starts_with("pub(crate) use crate::"))
        {
            in_use = true;
            stmt.clear();
        }
        if in_use {
            stmt.push_str(t);
            if t.contains(';') {
                in_use = false;
                let after = stmt.split("crate::").nth(1).unwrap_or("");
                if let Some(group) = after.strip_prefix('{') {
                    let group = group.split('}').next().unwrap_or("");
                    let mut depth = 0;
                    let mut item = String::new();
                    for ch in group.chars() {
                        match ch {
                            '{' => depth += 1,
                            '}' => depth -= 1,
                            ',' if depth == 0 => {
                                push_first(&item, &mut out);
                                item.clear();
                                continue;
                            }
                            _ => {}
                        }
                        item.push(ch);
                    }
                    push_first(&item, &mut out);
                } else {
                    push_first(after, &mut out);
                }
            }
        }
    }
    out
}

/// Every `crate::name` written anywhere (paths in code, doc links, comments): a lower-case
/// `name` is a module (items re-exported at the crate root are capitalised or macros).
fn mentioned_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        let next = rest[name.len()..].chars().next();
        if !name.is_empty() && next != Some('!') && next.is_none_or(|c| !c.is_alphanumeric()) {
            out.insert(name);
        }
    }
    out
}

fn push_first(path: &str, out: &mut BTreeSet<String>) {
    let first: String = path
        .trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if !first.is_empty() && first != "self" {
        out.insert(first);
    }
}

fn graph(crate_dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join(crate_dir).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(!files.is_empty(), "no sources under {}", src.display());
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let Some(m) = module_of(&src, &f) else {
            continue;
        };
        let text = std::fs::read_to_string(&f).expect("readable source");
        let edges = g.entry(m.clone()).or_default();
        for target in imported_modules(&text)
            .into_iter()
            .chain(mentioned_modules(&text))
        {
            if target != m {
                edges.insert(target);
            }
        }
    }
    g
}

/// A cycle in `g`, if any, as the modules along it.
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_owned(), 1);
        stack.push(n.to_owned());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_checker_finds_a_planted_cycle() {
    let mut g = BTreeMap::new();
    g.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    g.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    g.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert!(find_cycle(&g).is_some());
    g.insert("c".to_owned(), BTreeSet::new());
    assert!(find_cycle(&g).is_none());
    let used = imported_modules(
        "use crate::x::Y;\nuse crate::{a::B, c,\n d::{E, F}};\npub(crate) use crate::z;",
    );
    assert_eq!(
        used.into_iter().collect::<Vec<_>>(),
        vec!["a", "c", "d", "x", "z"]
    );
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    for krate in [
        "crates/node",
        "crates/browser",
        "crates/onion",
        "crates/rendezvous",
        "crates/ordb",
        "crates/wire",
        "crates/kad",
        "bridge",
    ] {
        let g = graph(krate);
        if let Some(cycle) = find_cycle(&g) {
            panic!(
                "{krate}: modules import each other in a cycle: {}",
                cycle.join(" -> ")
            );
        }
    }
}

/// The files under `crates/<krate>/src` that open an inherent `impl <ty>` block, with how many
/// each opens.
fn inherent_impls(krate: &str, ty: &str) -> Vec<(PathBuf, usize)> {
    let src = root().join(krate).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let (spaced, braced) = (format!("impl {ty} "), format!("impl {ty}{{"));
    files
        .into_iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(&f).expect("readable source");
            let n = text
                .lines()
                .map(str::trim_start)
                .filter(|l| l.starts_with(&spaced) || l.starts_with(&braced))
                .count();
            (n > 0).then_some((f, n))
        })
        .collect()
}

/// One owner, one `impl`: the owner's methods are all in its own file, and its parts are
/// fields with methods of their own (no module continues the owner's `impl`).
#[test]
fn one_impl_node_in_node_rs_and_one_impl_rendezvous_in_rendezvous_rs() {
    for (krate, ty, file) in [
        ("crates/node", "Node", "node.rs"),
        ("crates/rendezvous", "Rendezvous", "rendezvous.rs"),
    ] {
        let found = inherent_impls(krate, ty);
        let src = root().join(krate).join("src");
        let listed: Vec<String> = found
            .iter()
            .map(|(f, n)| format!("{} ({n})", f.display()))
            .collect();
        assert!(
            found.len() == 1 && found[0].0 == src.join(file) && found[0].1 == 1,
            "exactly one `impl {ty}`, in {krate}/src/{file}; found: {listed:?}"
        );
    }
}
