//! Compiling a route script into a [`Bundle`]: the engine, the AST, the modules it imports,
//! a content hash and the files it was built from (what the reload watcher watches).
//!
//! `import "nat" as nat;` is resolved here, at compile time, never while a hook runs: the
//! module's source is found (next to the script, then in a `stdlib/` folder beside or above
//! it, then among the modules built into the binary), compiled on the same engine, and made
//! callable as `nat::fn()`. Hooks are called without evaluating the script's top level, so
//! the import statement itself never runs; the alias is registered on the engine instead.
//! The engine's resolver then holds only these modules, so a script can read no file.

use super::{ScriptError, STDLIB};
use rhai::module_resolvers::StaticModuleResolver;
use rhai::{ASTNode, Engine, Expr, Module, Position, Scope, Shared, Stmt, AST};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// How deep modules may import modules (a cycle is reported before this is reached).
const MAX_IMPORT_DEPTH: usize = 8;

/// A compiled script: engine and AST swapped as one unit on reload.
pub struct Bundle {
    pub engine: Arc<Engine>,
    pub ast: AST,
    /// The script's name in diagnostics (its path, or a label for built-in sources).
    pub path: String,
    /// 1 for the first script loaded, +1 for every reload that changed something.
    pub version: u64,
    /// SHA-256 (hex) of the script and every module it imports.
    pub hash: String,
    pub loaded_at: SystemTime,
    /// The files read to build it: the script and the modules found on disk.
    pub sources: Vec<PathBuf>,
    /// The imported modules' ASTs with their file names, for validation.
    module_asts: Vec<(String, AST)>,
    hooks: HashSet<String>,
    /// Line of each `fn name(` in the script, for errors Rhai reports without a position.
    fn_lines: HashMap<String, usize>,
}

impl Bundle {
    pub fn has_hook(&self, name: &str) -> bool {
        self.hooks.contains(name)
    }

    /// Names of the functions the script defines with no parameters (its routes).
    pub fn hooks(&self) -> impl Iterator<Item = &str> {
        self.hooks.iter().map(String::as_str)
    }

    /// The modules the script imports: (file name, AST).
    pub fn module_asts(&self) -> impl Iterator<Item = (&str, &AST)> {
        self.module_asts.iter().map(|(f, a)| (f.as_str(), a))
    }

    /// The line where the script defines function `name`.
    pub fn fn_line(&self, name: &str) -> Option<usize> {
        self.fn_lines.get(name).copied()
    }
}

/// `fn name(` at the start of a line (after blanks), by name. Rhai gives limit errors
/// (operations, call depth, data size) the position of the call that started the hook,
/// which for a hook called from Rust is none; the hook's own line is the best left.
fn function_lines(text: &str) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("fn ") else { continue };
        let name: String = rest.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            out.entry(name).or_insert(i + 1);
        }
    }
    out
}

/// Where a script's source comes from.
pub enum Source<'a> {
    /// A file on disk; imports resolve next to it.
    File(&'a Path),
    /// Text with a name for diagnostics (built-in default, embedding, tests); imports resolve
    /// only among the built-in modules.
    Text { text: &'a str, name: &'a str },
}

/// Compiles a script on `engine` (freshly built: the imported modules are registered on it).
///
/// # Errors
/// The file cannot be read, a syntax error, an import that cannot be resolved or does not
/// compile, or no `route` function.
pub fn compile(mut engine: Engine, source: Source<'_>) -> Result<Bundle, ScriptError> {
    let (text, name, dir) = match source {
        Source::File(p) => {
            let text = read(p)?;
            (text, p.display().to_string(), p.parent().map(Path::to_path_buf))
        }
        Source::Text { text, name } => (text.to_string(), name.to_string(), None),
    };
    let mut ast = parse(&engine, &text, &name)?;
    ast.set_source(name.as_str());

    let mut resolver = Resolver::new(dir.as_deref());
    for import in imports_of(&ast, &name)? {
        let module = resolver.resolve(&mut engine, &import, 0)?;
        // Top level or inside a function, the alias is callable from every function: the
        // import statement itself never runs (hooks are called without the top level).
        if let Some(alias) = import.alias {
            engine.register_static_module(alias.as_str(), module);
        }
    }
    engine.set_module_resolver(resolver.static_resolver.clone());

    let hooks: HashSet<String> =
        ast.iter_functions().filter(|f| f.params.is_empty()).map(|f| f.name.to_string()).collect();
    if !hooks.contains("route") {
        return Err(ScriptError::At { file: name, line: 1, col: 1, message: "the script has no `fn route()`".into() });
    }

    let mut hasher = Sha256::new();
    hasher.update(text.as_bytes());
    for (path, src) in &resolver.loaded {
        hasher.update(path.as_bytes());
        hasher.update(src.as_bytes());
    }
    let hash = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let mut sources: Vec<PathBuf> = resolver.files;
    if let Source::File(p) = source {
        sources.insert(0, p.to_path_buf());
    }
    Ok(Bundle {
        engine: Arc::new(engine),
        ast,
        path: name,
        version: 1,
        hash,
        loaded_at: SystemTime::now(),
        sources,
        module_asts: resolver.asts,
        hooks,
        fn_lines: function_lines(&text),
    })
}

fn read(p: &Path) -> Result<String, ScriptError> {
    std::fs::read_to_string(p).map_err(|e| ScriptError::Other(format!("{}: {e}", p.display())))
}

fn at(file: &str, pos: Position, message: String) -> ScriptError {
    ScriptError::At { file: file.into(), line: pos.line().unwrap_or(0), col: pos.position().unwrap_or(0), message }
}

fn parse(engine: &Engine, text: &str, name: &str) -> Result<AST, ScriptError> {
    engine.compile(text).map_err(|e| at(name, e.position(), e.to_string()))
}

/// One `import "path" [as alias];` statement.
struct Import {
    path: String,
    alias: Option<String>,
    file: String,
    pos: Position,
}

/// Every import statement of `ast`, top level and inside functions.
fn imports_of(ast: &AST, file: &str) -> Result<Vec<Import>, ScriptError> {
    let mut found = Vec::new();
    let mut bad = None;
    ast.walk(&mut |nodes: &[ASTNode]| {
        if let Some(ASTNode::Stmt(Stmt::Import(x, pos))) = nodes.last() {
            let (expr, alias) = &**x;
            match expr {
                Expr::StringConstant(s, _) => found.push(Import {
                    path: s.to_string(),
                    alias: (!alias.name.is_empty()).then(|| alias.name.to_string()),
                    file: file.to_string(),
                    pos: *pos,
                }),
                _ => bad = Some(*pos),
            }
        }
        true
    });
    match bad {
        // Resolved at compile time, so the path must be known then.
        Some(pos) => Err(at(file, pos, "an import path must be a string literal".into())),
        None => Ok(found),
    }
}

/// Finds, compiles and remembers the modules a script imports.
struct Resolver {
    dirs: Vec<PathBuf>,
    static_resolver: StaticModuleResolver,
    done: HashMap<String, Shared<Module>>,
    /// (module path, source) of every module compiled, for the content hash.
    loaded: Vec<(String, String)>,
    files: Vec<PathBuf>,
    asts: Vec<(String, AST)>,
    in_progress: Vec<String>,
}

impl Resolver {
    /// Search order: the script's folder, `stdlib/` in it, `stdlib/` beside it (a script in
    /// `scripts/` finds the project's `stdlib/`), then the modules built into the binary.
    fn new(script_dir: Option<&Path>) -> Resolver {
        let dirs = match script_dir {
            Some(d) => {
                let d = if d.as_os_str().is_empty() { Path::new(".") } else { d };
                vec![d.to_path_buf(), d.join("stdlib"), d.join("..").join("stdlib")]
            }
            None => Vec::new(),
        };
        Resolver {
            dirs,
            static_resolver: StaticModuleResolver::new(),
            done: HashMap::new(),
            loaded: Vec::new(),
            files: Vec::new(),
            asts: Vec::new(),
            in_progress: Vec::new(),
        }
    }

    fn find(&self, path: &str) -> Option<(String, Option<PathBuf>)> {
        let file = if path.ends_with(".rhai") { path.to_string() } else { format!("{path}.rhai") };
        // A module name is a file name in the search folders, never a path out of them.
        if !file.contains('/') && !file.contains('\\') && !file.starts_with('.') {
            for dir in &self.dirs {
                let candidate = dir.join(&file);
                if let Ok(src) = std::fs::read_to_string(&candidate) {
                    return Some((src, Some(candidate)));
                }
            }
        }
        let name = path.trim_end_matches(".rhai");
        STDLIB.iter().find(|(n, _)| *n == name).map(|(_, src)| (src.to_string(), None))
    }

    fn resolve(&mut self, engine: &mut Engine, import: &Import, depth: usize) -> Result<Shared<Module>, ScriptError> {
        if let Some(m) = self.done.get(&import.path) {
            return Ok(m.clone());
        }
        if self.in_progress.contains(&import.path) || depth > MAX_IMPORT_DEPTH {
            let chain = self.in_progress.join(" -> ");
            return Err(at(&import.file, import.pos, format!("import cycle: {chain} -> {}", import.path)));
        }
        let Some((src, file)) = self.find(&import.path) else {
            return Err(at(&import.file, import.pos, format!("module \"{}\" not found", import.path)));
        };
        let shown = file.as_ref().map(|f| f.display().to_string()).unwrap_or_else(|| format!("stdlib/{}", import.path));
        let mut ast = parse(engine, &src, &shown)?;
        ast.set_source(shown.as_str());
        self.in_progress.push(import.path.clone());
        for inner in imports_of(&ast, &shown)? {
            let module = self.resolve(engine, &inner, depth + 1)?;
            // The module's own aliases, so that validation knows its `alias::fn()` calls
            // (at run time its functions see the imports it ran itself).
            if let Some(alias) = inner.alias {
                engine.register_static_module(alias.as_str(), module);
            }
        }
        self.in_progress.pop();
        // The module's own imports run now, against the modules resolved so far.
        engine.set_module_resolver(self.static_resolver.clone());
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine).map_err(|e| {
            let (_, pos) = super::innermost(&e);
            at(&shown, pos.unwrap_or(Position::NONE), e.to_string())
        })?;
        let module: Shared<Module> = module.into();
        self.static_resolver.insert(import.path.as_str(), (*module).clone());
        self.done.insert(import.path.clone(), module.clone());
        self.loaded.push((import.path.clone(), src));
        self.asts.push((shown, ast));
        if let Some(f) = file {
            self.files.push(f);
        }
        Ok(module)
    }
}
