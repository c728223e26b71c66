//! The gateway's top-level modules form no import cycle, and the data side never reaches the
//! control side. The graph is built from the source: every `crate::X` path (in a `use`, a
//! path expression or a doc link, grouped `crate::{a, b}` imports included) in a module's
//! files is an edge from that module to `X`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The control side: process state and reload (`control`), the admin listener (`admin`), the
/// command line (`cli`). Everything else is the data side.
const CONTROL_SIDE: [&str; 3] = ["control", "admin", "cli"];

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The names `text` reaches through `crate::`: `crate::a::b` gives `a`, `crate::{a, b::c}`
/// gives `a` and `b`.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start => {
                        names.insert(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            names.insert(ident(rest));
        }
    }
    names
}

/// The module graph of the crate rooted at `src` (top-level modules only).
fn module_graph(src: &Path) -> std::io::Result<Graph> {
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(src)? {
        let path = entry?.path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        if name == "lib" || name == "main" {
            continue;
        }
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(&path, &mut files)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        } else {
            continue;
        }
        modules.insert(name, files);
    }
    let mut graph = Graph::new();
    for (name, files) in &modules {
        let mut edges = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(file)?;
            edges.extend(
                crate_paths(&text)
                    .into_iter()
                    .filter(|n| n != name && modules.contains_key(n)),
            );
        }
        graph.insert(name.clone(), edges);
    }
    Ok(graph)
}

/// Every module reachable from `from`, `from` itself only when on a cycle.
fn reachable(graph: &Graph, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_owned()];
    while let Some(m) = stack.pop() {
        for next in graph.get(&m).into_iter().flatten() {
            if seen.insert(next.clone()) {
                stack.push(next.clone());
            }
        }
    }
    seen
}

/// One cycle through `start`, as a path of module names.
fn cycle_through(graph: &Graph, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &Graph,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let Some(last) = path.last().cloned() else {
            return false;
        };
        for next in graph.get(&last).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    walk(graph, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

/// The problems of `graph`: its cycles, and data-side modules that reach the control side.
fn problems(graph: &Graph) -> Vec<String> {
    let mut found = Vec::new();
    for module in graph.keys() {
        if let Some(cycle) = cycle_through(graph, module) {
            found.push(format!("cycle: {}", cycle.join(" -> ")));
        }
        if !CONTROL_SIDE.contains(&module.as_str()) {
            let reached: Vec<_> = reachable(graph, module)
                .into_iter()
                .filter(|m| CONTROL_SIDE.contains(&m.as_str()))
                .collect();
            if !reached.is_empty() {
                found.push(format!("data-side {module} reaches {}", reached.join(", ")));
            }
        }
    }
    found
}

#[test]
fn no_cycles_between_top_level_modules_and_no_data_to_control_edge() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src).expect("gateway/src is readable");
    assert!(graph.len() > 10, "too few modules found: {graph:?}");
    let found = problems(&graph);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_check_finds_cycles_and_data_to_control_edges() {
    let uses = |pairs: &[(&str, &str)]| {
        let mut graph = Graph::new();
        for (from, to) in pairs {
            graph
                .entry((*from).to_owned())
                .or_default()
                .insert((*to).to_owned());
            graph.entry((*to).to_owned()).or_default();
        }
        graph
    };
    assert!(problems(&uses(&[("pipeline", "admit"), ("control", "pipeline")])).is_empty());
    let cycle = problems(&uses(&[("a", "b"), ("b", "c"), ("c", "a")]));
    assert!(
        cycle.iter().any(|p| p == "cycle: a -> b -> c -> a"),
        "{cycle:?}"
    );
    let up = problems(&uses(&[("pipeline", "routing"), ("routing", "control")]));
    assert!(
        up.iter().any(|p| p == "data-side pipeline reaches control"),
        "{up:?}"
    );
    assert_eq!(
        crate_paths("use crate::{admit::{self, X}, auth};\nlet x = crate::error::E;"),
        ["admit", "auth", "error"].map(String::from).into()
    );
}

#[test]
fn pipeline_run_is_at_most_80_lines() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/pipeline/mod.rs");
    let text = std::fs::read_to_string(path).expect("pipeline/mod.rs is readable");
    let start = text
        .lines()
        .position(|l| l.starts_with("async fn run<"))
        .expect("pipeline::run exists");
    let length = text
        .lines()
        .skip(start)
        .position(|l| l == "}")
        .expect("pipeline::run ends")
        + 1;
    assert!(length <= 80, "pipeline::run is {length} lines");
}
