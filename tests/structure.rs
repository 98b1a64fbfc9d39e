//! The layout's rules, checked on the source text (README "Request flow"):
//! no import circle between `src/` modules or between sibling files; `config`
//! and `metrics` import no other module of the crate; `source`, `metrics` and
//! `bench` never import `server`; no file under `src/` above 700 lines; every
//! file opens with a module doc comment.
//!
//! Imports are the `crate::…`, `super::…` and `self::…` paths in code (comments
//! and `#[cfg(test)] mod tests` left out), resolved to the longest module they
//! name. A child using its parent's items (`super::`) is an edge like any
//! other; a parent using its own children is not: `mod child;` already makes
//! the two one unit, and the parent is where the child's shared items live.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A module path: `["source", "redis", "codec"]`.
type Module = Vec<String>;

/// Every `.rs` file under `src/` (but `lib.rs` and `main.rs`) by module path,
/// with its text.
fn modules() -> BTreeMap<Module, (String, String)> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<Module, (String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(root).unwrap().with_extension("");
            let mut m: Module = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
            if m.last().map(String::as_str) == Some("mod") {
                m.pop();
            }
            if m == ["lib"] || m == ["main"] {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            out.insert(m, (rel.display().to_string(), text));
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

/// The code of a file: line comments removed (a `//` after `:` is a URL in a
/// string, kept), and the `#[cfg(test)] mod tests` module, which ends every
/// file that has one, cut; other `#[cfg(test)]` items are kept.
fn code(text: &str) -> String {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines.peek().is_some_and(|next| next.trim_start().starts_with("mod tests"))
        {
            break;
        }
        let mut cut = line.len();
        let mut from = 0;
        while let Some(i) = line[from..].find("//") {
            let at = from + i;
            if at == 0 || line.as_bytes()[at - 1] != b':' {
                cut = at;
                break;
            }
            from = at + 2;
        }
        out.push(&line[..cut]);
    }
    out.join("\n")
}

/// The module paths a file's code names, absolute, before resolution.
fn paths(module: &Module, code: &str) -> Vec<Module> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        // Bytes, not `&code[i..]`: `i` may be inside a multi-byte character.
        let rest = &bytes[i..];
        let base = ["crate::", "super::", "self::"].into_iter().find(|b| rest.starts_with(b.as_bytes()));
        let starts_word = i == 0 || !is_ident(bytes[i - 1]);
        let Some(base) = base.filter(|_| starts_word) else {
            i += 1;
            continue;
        };
        // The path: identifiers and `::`, then maybe a `{…}` group.
        let mut j = i + base.len();
        while j < bytes.len() && (is_ident(bytes[j]) || bytes[j..].starts_with(b"::")) {
            j += if bytes[j] == b':' { 2 } else { 1 };
        }
        let head: Vec<String> =
            code[i + base.len()..j].split("::").filter(|s| !s.is_empty()).map(String::from).collect();
        let mut tails = vec![Vec::new()];
        if bytes.get(j) == Some(&b'{') {
            let end = code[j..].find('}').map_or(code.len(), |e| j + e);
            tails = code[j + 1..end]
                .split(',')
                .map(|t| {
                    t.split(" as ")
                        .next()
                        .unwrap_or("")
                        .split("::")
                        .map(str::trim)
                        .filter(|s| !s.is_empty() && *s != "self" && *s != "{")
                        .map(String::from)
                        .collect()
                })
                .collect();
            j = end;
        }
        let prefix: Module = match base {
            "crate::" => Vec::new(),
            "self::" => module.clone(),
            _ => module[..module.len().saturating_sub(1)].to_vec(),
        };
        for tail in tails {
            let mut p = prefix.clone();
            p.extend(head.iter().cloned());
            p.extend(tail);
            out.push(p);
        }
        i = j.max(i + 1);
    }
    out
}

/// Every module a module imports (resolved to the longest existing module).
fn edges(mods: &BTreeMap<Module, (String, String)>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut edges = BTreeMap::new();
    for (m, (_, text)) in mods {
        let mut to = BTreeSet::new();
        for p in paths(m, &code(text)) {
            let target = (1..=p.len()).rev().map(|n| p[..n].to_vec()).find(|c| mods.contains_key(c));
            // Not itself, and not one of its own descendants.
            if let Some(t) = target.filter(|t| !t.starts_with(m)) {
                to.insert(t);
            }
        }
        edges.insert(m.clone(), to);
    }
    edges
}

/// Strongly connected components with more than one member (Tarjan).
fn cycles(nodes: &[Module], edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct T<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        on: BTreeSet<Module>,
        next: usize,
        found: Vec<Vec<Module>>,
    }
    fn visit(t: &mut T<'_>, v: &Module) {
        t.index.insert(v.clone(), t.next);
        t.low.insert(v.clone(), t.next);
        t.next += 1;
        t.stack.push(v.clone());
        t.on.insert(v.clone());
        let next: Vec<Module> = t.edges.get(v).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        for w in next {
            if !t.index.contains_key(&w) {
                visit(t, &w);
                let lw = t.low[&w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(&w) {
                let iw = t.index[&w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(&w);
                let done = &w == v;
                scc.push(w);
                if done {
                    break;
                }
            }
            if scc.len() > 1 {
                t.found.push(scc);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for n in nodes {
        if !t.index.contains_key(n) {
            visit(&mut t, n);
        }
    }
    t.found
}

fn show(ms: &[Module]) -> String {
    ms.iter().map(|m| m.join("::")).collect::<Vec<_>>().join(", ")
}

#[test]
fn the_checker_reads_code_only() {
    let text = "use crate::a; // crate::b\nlet u = \"redis://h\"; crate::c::f();\n#[cfg(test)]\npub(crate) mod fake;\nuse crate::d;\n#[cfg(test)]\nmod tests {\n    use crate::e;\n}\n";
    let got: Vec<String> = paths(&vec!["x".into()], &code(text)).into_iter().map(|p| p.join("::")).collect();
    assert_eq!(got, ["a", "c::f", "d"]);
}

#[test]
fn the_checker_finds_paths_and_cycles() {
    let m: Module = vec!["source".into(), "redis".into(), "codec".into()];
    let found =
        paths(&m, "use super::keys::{a, b::c};\nuse crate::cache::{self, X};\nlet y = crate::ocsp::f();");
    let want: Vec<Module> = [
        &["source", "redis", "keys", "a"][..],
        &["source", "redis", "keys", "b", "c"],
        &["cache"],
        &["cache", "X"],
        &["ocsp", "f"],
    ]
    .iter()
    .map(|p| p.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(found, want);
    let (a, b, c): (Module, Module, Module) = (vec!["a".into()], vec!["b".into()], vec!["c".into()]);
    let mut e = BTreeMap::new();
    e.insert(a.clone(), BTreeSet::from([b.clone()]));
    e.insert(b.clone(), BTreeSet::from([a.clone()]));
    e.insert(c.clone(), BTreeSet::from([a.clone()]));
    assert_eq!(cycles(&[a.clone(), b.clone(), c.clone()], &e).len(), 1);
    e.insert(b.clone(), BTreeSet::new());
    assert!(cycles(&[a, b, c], &e).is_empty());
}

#[test]
fn no_import_circle_between_modules_or_files() {
    let mods = modules();
    let files = edges(&mods);
    let nodes: Vec<Module> = mods.keys().cloned().collect();
    let file_cycles = cycles(&nodes, &files);
    assert!(
        file_cycles.is_empty(),
        "files importing each other: {}",
        file_cycles.iter().map(|c| format!("[{}]", show(c))).collect::<Vec<_>>().join("; ")
    );
    // The same at the top level: `a::x` importing `b` and `b::y` importing `a`.
    let mut top: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (from, to) in &files {
        let f = vec![from[0].clone()];
        let entry = top.entry(f.clone()).or_default();
        entry.extend(to.iter().map(|t| vec![t[0].clone()]).filter(|t| *t != f));
    }
    let tops: Vec<Module> = top.keys().cloned().collect();
    let top_cycles = cycles(&tops, &top);
    assert!(
        top_cycles.is_empty(),
        "top-level modules importing each other: {}",
        top_cycles.iter().map(|c| format!("[{}]", show(c))).collect::<Vec<_>>().join("; ")
    );
}

#[test]
fn leaves_stay_leaves_and_nothing_reaches_into_the_server() {
    let mods = modules();
    let files = edges(&mods);
    for (from, to) in &files {
        let names: Vec<&str> = to.iter().map(|t| t[0].as_str()).filter(|t| *t != from[0]).collect();
        match from[0].as_str() {
            "config" | "metrics" => {
                assert!(
                    names.is_empty(),
                    "{} imports {names:?}: it must import no other module",
                    from.join("::")
                )
            }
            "source" | "bench" => {
                assert!(!names.contains(&"server"), "{} imports the server", from.join("::"))
            }
            _ => {}
        }
    }
}

#[test]
fn files_are_small_and_say_what_they_own() {
    for (file, text) in modules().values() {
        let lines = text.lines().count();
        assert!(lines <= 700, "src/{file}.rs has {lines} lines (at most 700)");
        assert!(text.starts_with("//!"), "src/{file}.rs does not open with a module doc comment");
    }
}
