//! Route blocks → Rhai functions (design.md §3, docs/script-api.md §10). Every statement is
//! either converted or copied in place as `// TODO(port): original line`, with the reason
//! recorded for the report; the output is always a valid script.

use super::catalog::{self, Catalog, PvMap, Ret, Ty};
use super::parse::{Case, Expr, Item, Stmt, StmtKind};
use std::collections::HashMap;

/// One piece the converter could not map.
#[derive(Debug, Clone)]
pub struct Todo {
    pub line: usize,
    pub end_line: usize,
    pub reason: String,
    /// Line of route.rhai where the TODO comment starts.
    pub out_line: usize,
}

/// Result of a conversion step: the text, or why it cannot be done.
type Conv<T> = Result<T, String>;

/// What kind of value an expression gives, to fix comparisons (`$rs == "200"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Str,
    Bool,
    Unknown,
}

pub struct ScriptOut {
    pub text: String,
    pub todos: Vec<Todo>,
    pub converted: usize,
    pub notes: Vec<(usize, String)>,
}

struct Emitter<'a> {
    cat: &'a Catalog,
    src_lines: Vec<&'a str>,
    out: Vec<String>,
    indent: usize,
    todos: Vec<Todo>,
    converted: usize,
    notes: Vec<(usize, String)>,
    /// Route name (as written) → its Rhai function and how many parameters it takes.
    routes: HashMap<String, (String, usize)>,
    /// Parameters of the function being written (`$param(n)` → `pn`).
    cur_params: usize,
    /// Whether the function being written is a `route[x]` sub-route.
    in_sub_route: bool,
    /// Depth of `while` loops around the statement being written (`break` is legal there).
    loops: usize,
    /// Every route block of the file as its Rhai function name.
    defined: std::collections::HashSet<String>,
}

/// The Rhai function name of a route block.
pub fn fn_name(kind: &str, name: Option<&str>) -> String {
    match name {
        None => kind.to_string(),
        Some(n) => {
            let clean: String =
                n.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
            format!("{kind}_{clean}")
        }
    }
}

pub fn convert(items: &[Item], src: &str, cat: &Catalog, input_name: &str) -> ScriptOut {
    let mut e = Emitter {
        cat,
        src_lines: src.lines().collect(),
        out: Vec::new(),
        indent: 0,
        todos: Vec::new(),
        converted: 0,
        notes: Vec::new(),
        routes: HashMap::new(),
        cur_params: 0,
        in_sub_route: false,
        loops: 0,
        defined: items
            .iter()
            .filter_map(|i| match i {
                Item::Route { kind, name, .. } => Some(fn_name(kind, name.as_deref())),
                _ => None,
            })
            .collect(),
    };
    e.scan_routes(items);
    e.push(format!("// route.rhai: converted by `siprox port` from {input_name}."));
    e.push("// Lines marked TODO(port) could not be converted; port-report.txt lists each with the reason.".into());
    for (i, item) in items.iter().enumerate() {
        match item {
            Item::Comment { .. } if super::parse::comment_is_setting(items, i) => {}
            Item::Comment { text, trailing } => e.comment(text, *trailing),
            Item::Route { kind, name, args, body, line, .. } => e.route(kind, name.as_deref(), args, body, *line),
            Item::Unparsed { line, end_line, reason } => {
                e.push(String::new());
                e.todo(*line, *end_line, format!("not opensips.cfg syntax here: {reason}"));
            }
            Item::Global { .. } | Item::LoadModule { .. } | Item::Modparam { .. } => {}
        }
    }
    if !e.defined.contains("route") {
        e.missing_main_route();
    }
    let mut text = e.out.join("\n");
    text.push('\n');
    ScriptOut { text, todos: e.todos, converted: e.converted, notes: e.notes }
}

impl Emitter<'_> {
    /// siprox needs `fn route()`; a file without a main route that converted (a fragment,
    /// or one whose `route {` did not parse) gets one that answers 500, so the gap shows.
    fn missing_main_route(&mut self) {
        self.push(String::new());
        self.push("fn route() {".into());
        self.indent += 1;
        let out_line = self.out.len() + 1;
        self.push(
            "// TODO(port): no main `route { … }` could be converted; until it is ported every request gets 500."
                .into(),
        );
        self.todos.push(Todo {
            line: 1,
            end_line: 1,
            reason: "no main `route { … }` block could be converted: route.rhai answers 500 until it is ported".into(),
            out_line,
        });
        self.push("sl_send_reply(500, \"Not Ported\");".into());
        self.push("exit();".into());
        self.indent -= 1;
        self.push("}".into());
    }

    fn push(&mut self, line: String) {
        if line.is_empty() {
            self.out.push(line);
        } else {
            self.out.push(format!("{}{line}", "    ".repeat(self.indent)));
        }
    }

    /// Route blocks by name, with the parameter count their callers pass.
    fn scan_routes(&mut self, items: &[Item]) {
        let mut params: HashMap<String, usize> = HashMap::new();
        fn walk_expr(e: &Expr, params: &mut HashMap<String, usize>) {
            match e {
                Expr::Call { name, args } => {
                    if name == "route" {
                        if let Some(target) = args.first().and_then(route_target) {
                            let n = params.entry(target).or_default();
                            *n = (*n).max(args.len().saturating_sub(1));
                        }
                    }
                    args.iter().for_each(|a| walk_expr(a, params));
                }
                Expr::Unary { e, .. } | Expr::Paren(e) => walk_expr(e, params),
                Expr::Binary { l, r, .. } => {
                    walk_expr(l, params);
                    walk_expr(r, params);
                }
                _ => {}
            }
        }
        fn walk(stmts: &[Stmt], params: &mut HashMap<String, usize>) {
            for s in stmts {
                match &s.kind {
                    StmtKind::Expr(e) | StmtKind::Return(Some(e)) => walk_expr(e, params),
                    StmtKind::Assign { value, .. } => walk_expr(value, params),
                    StmtKind::If { cond, then, els, .. } => {
                        walk_expr(cond, params);
                        walk(then, params);
                        if let Some(e) = els {
                            walk(e, params);
                        }
                    }
                    StmtKind::Switch { subject, cases } => {
                        walk_expr(subject, params);
                        cases.iter().for_each(|c| walk(&c.body, params));
                    }
                    StmtKind::While { cond, body } => {
                        walk_expr(cond, params);
                        walk(body, params);
                    }
                    StmtKind::ForEach { body, .. } | StmtKind::Block(body) => walk(body, params),
                    _ => {}
                }
            }
        }
        for item in items {
            if let Item::Route { body, .. } = item {
                walk(body, &mut params);
            }
        }
        for item in items {
            if let Item::Route { kind, name: Some(name), .. } = item {
                if kind == "route" {
                    let n = params.get(name).copied().unwrap_or(0);
                    self.routes.insert(name.clone(), (fn_name("route", Some(name)), n));
                }
            }
        }
    }

    fn comment(&mut self, text: &str, trailing: bool) {
        let lines: Vec<&str> = text.lines().collect();
        if trailing && lines.len() <= 1 {
            let t = text.trim();
            if let Some(last) = self.out.last_mut() {
                last.push_str(&format!(" //{}{t}", if t.is_empty() { "" } else { " " }));
                return;
            }
        }
        if lines.is_empty() {
            self.push("//".into());
        }
        for l in lines {
            let t = l.trim_end();
            self.push(if t.is_empty() {
                "//".into()
            } else if t.starts_with(' ') || t.starts_with('\t') {
                format!("//{t}")
            } else {
                format!("// {t}")
            });
        }
    }

    /// Copies source lines as TODO comments and records why.
    fn todo(&mut self, line: usize, end_line: usize, reason: String) {
        let out_line = self.out.len() + 1;
        for n in line..=end_line.max(line) {
            let text = self.src_lines.get(n - 1).map_or("", |l| l.trim());
            self.push(format!("// TODO(port): {text}"));
        }
        self.todos.push(Todo { line, end_line, reason, out_line });
    }

    fn route(&mut self, kind: &str, name: Option<&str>, args: &[String], body: &[Stmt], line: usize) {
        let fname = fn_name(kind, name);
        let nparams = name.filter(|_| kind == "route").and_then(|n| self.routes.get(n)).map_or(0, |r| r.1);
        self.cur_params = nparams;
        self.in_sub_route = kind == "route" && name.is_some();
        self.push(String::new());
        match kind {
            "timer_route" => {
                let header = std::iter::once(name.unwrap_or(""))
                    .chain(args.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.notes.push((line, format!("`timer_route[{header}]` is kept as `fn {fname}()` but siprox has no timer routes yet: it is never called")));
            }
            "local_route" => self
                .notes
                .push((line, "`local_route` is kept but siprox does not call it yet (docs/script-api.md §1)".into())),
            "event_route" if name != Some("E_DISPATCHER_STATUS") => self.notes.push((
                line,
                format!("`event_route[{}]` is kept but siprox raises only E_DISPATCHER_STATUS", name.unwrap_or("")),
            )),
            _ => {}
        }
        let params: Vec<String> = (1..=nparams).map(|i| format!("p{i}")).collect();
        self.push(format!("fn {fname}({}) {{", params.join(", ")));
        self.converted += 1;
        self.indent += 1;
        self.block(body);
        // A sub-route whose result is tested returns 1 when it ends without `return`.
        if self.in_sub_route && !ends_flow(body) && returns_value(body) {
            self.push("return 1;".into());
        }
        self.indent -= 1;
        self.push("}".into());
    }

    fn block(&mut self, stmts: &[Stmt]) {
        for s in stmts {
            self.stmt(s);
        }
    }

    fn stmt(&mut self, s: &Stmt) {
        match &s.kind {
            StmtKind::Comment { text, trailing } => self.comment(text, *trailing),
            StmtKind::Unparsed { reason } => self.todo(s.line, s.end_line, format!("does not parse: {reason}")),
            StmtKind::If { cond, then, els, header_end } => {
                self.if_stmt(s.line, *header_end, cond, then, els.as_deref(), "")
            }
            StmtKind::Switch { subject, cases } => self.switch(s, subject, cases),
            StmtKind::While { cond, body } => match self.cond(cond) {
                Ok(c) => {
                    self.converted += 1;
                    self.push(format!("while {c} {{"));
                    self.indent += 1;
                    self.loops += 1;
                    self.block(body);
                    self.loops -= 1;
                    self.indent -= 1;
                    self.push("}".into());
                }
                Err(r) => self.todo(s.line, s.end_line, r),
            },
            StmtKind::ForEach { var, list, .. } => self.todo(
                s.line,
                s.end_line,
                format!(
                    "`for ({} in {})`: siprox reads only the newest value of an AVP or header (no `[*]`)",
                    short(var),
                    short(list)
                ),
            ),
            StmtKind::Block(body) => {
                self.push("{".into());
                self.indent += 1;
                self.block(body);
                self.indent -= 1;
                self.push("}".into());
            }
            _ => match self.simple(&s.kind) {
                Ok(lines) => {
                    self.converted += 1;
                    for l in lines {
                        self.push(l);
                    }
                }
                Err(r) => self.todo(s.line, s.end_line, r),
            },
        }
    }

    /// A statement that becomes one or a few lines.
    fn simple(&mut self, kind: &StmtKind) -> Conv<Vec<String>> {
        Ok(match kind {
            StmtKind::Exit => vec!["exit();".into()],
            StmtKind::Drop => vec!["drop();".into()],
            StmtKind::Break if self.loops > 0 => vec!["break;".into()],
            StmtKind::Break => return Err("`break` outside a loop or at a place a Rhai `switch` cannot express".into()),
            StmtKind::Return(v) => self.ret(v.as_ref())?,
            StmtKind::Expr(Expr::Call { name, args }) => vec![format!("{};", self.call(name, args)?.0)],
            StmtKind::Expr(e) => return Err(format!("an expression alone does nothing in siprox: {}", short(e))),
            StmtKind::Assign { target, op, value } => self.assign(target, op, value)?,
            _ => return Err("statement not converted".into()),
        })
    }

    fn ret(&mut self, v: Option<&Expr>) -> Conv<Vec<String>> {
        let value = match v {
            Some(Expr::Paren(inner)) => Some(&**inner),
            other => other,
        };
        // `return(0)` ends the whole script in OpenSIPS (spec §1.2).
        if let Some(Expr::Int(0)) = value {
            return Ok(vec!["exit();".into()]);
        }
        if !self.in_sub_route {
            return Ok(vec!["return;".into()]);
        }
        Ok(vec![match value {
            None => "return 1;".into(),
            Some(v) => format!("return {};", self.value(v)?.0),
        }])
    }

    fn if_stmt(
        &mut self,
        line: usize,
        header_end: usize,
        cond: &Expr,
        then: &[Stmt],
        els: Option<&[Stmt]>,
        prefix: &str,
    ) {
        match self.cond(cond) {
            Ok(c) => {
                self.converted += 1;
                self.push(format!("{prefix}if {c} {{"));
            }
            Err(reason) => {
                self.todo(
                    line,
                    header_end,
                    format!(
                        "{reason}; the block below is kept, converted, under `if false` until the condition is ported"
                    ),
                );
                self.push(format!("{prefix}if false {{"));
            }
        }
        self.indent += 1;
        self.block(then);
        self.indent -= 1;
        match els {
            None => self.push("}".into()),
            Some([only]) if matches!(only.kind, StmtKind::If { .. }) => {
                if let StmtKind::If { cond, then, els, header_end } = &only.kind {
                    self.if_stmt(only.line, *header_end, cond, then, els.as_deref(), "} else ");
                }
            }
            Some(body) => {
                self.push("} else {".into());
                self.indent += 1;
                self.block(body);
                self.indent -= 1;
                self.push("}".into());
            }
        }
    }

    fn switch(&mut self, s: &Stmt, subject: &Expr, cases: &[Case]) {
        let (subj, kind) = match self.value(subject) {
            Ok(v) => v,
            Err(r) => return self.todo(s.line, s.end_line, r),
        };
        let arms = match switch_arms(cases) {
            Ok(a) => a,
            Err(r) => return self.todo(s.line, s.end_line, r),
        };
        let mut labels_text = Vec::new();
        for (labels, _) in &arms {
            let mut texts = Vec::new();
            for l in labels {
                match self.case_label(l.as_ref(), kind) {
                    Ok(t) => texts.push(t),
                    Err(r) => return self.todo(s.line, s.end_line, r),
                }
            }
            labels_text.push(texts.join(" | "));
        }
        self.converted += 1;
        self.push(format!("switch {subj} {{"));
        self.indent += 1;
        for ((_, body), labels) in arms.iter().zip(labels_text) {
            self.push(format!("{labels} => {{"));
            self.indent += 1;
            self.block(body);
            self.indent -= 1;
            self.push("}".into());
        }
        self.indent -= 1;
        self.push("}".into());
    }

    fn case_label(&self, label: Option<&Expr>, subject: Kind) -> Conv<String> {
        Ok(match label {
            None => "_".into(),
            Some(Expr::Int(i)) if subject == Kind::Str => rhai_str(&i.to_string()),
            Some(Expr::Int(i)) => i.to_string(),
            Some(Expr::Str(s)) if subject == Kind::Int && s.trim().parse::<i64>().is_ok() => s.trim().to_string(),
            Some(Expr::Str(s) | Expr::Ident(s) | Expr::Addr(s)) => rhai_str(s),
            Some(other) => return Err(format!("case label `{}` is not a constant", short(other))),
        })
    }

    fn assign(&mut self, target: &Expr, op: &str, value: &Expr) -> Conv<Vec<String>> {
        let Expr::Pv(text) = target else {
            return Err(format!("cannot assign to `{}`", short(target)));
        };
        let pv = match catalog::map_pv(text)? {
            PvMap::Branch if op == "=" => return Ok(vec![format!("append_branch({});", self.arg_str(value)?)]),
            PvMap::Pv(p) if catalog::writable(&p) => p,
            _ => return Err(format!("`{text}` cannot be written in siprox")),
        };
        let v = match value {
            Expr::Null if pv == "$rU" => "\"\"".to_string(),
            Expr::Null => "()".to_string(),
            other => self.value(other)?.0,
        };
        Ok(match op {
            ":=" if pv.starts_with("$avp(") => {
                vec![format!("while {pv} != () {{ {pv} = (); }}"), format!("{pv} = {v};")]
            }
            "+=" => vec![format!("{pv} = {pv} + {v};")],
            "-=" => vec![format!("{pv} = {pv} - {v};")],
            _ => vec![format!("{pv} = {v};")],
        })
    }

    /// A function call, with OpenSIPS's old spellings turned into today's.
    fn call(&mut self, name: &str, args: &[Expr]) -> Conv<(String, Ret)> {
        if name == "route" {
            return self.route_call(args);
        }
        for a in args {
            if let Expr::Str(s) = a {
                placeholder_check(s)?;
            }
        }
        let (name, args) = legacy(name, args)?;
        // `t_on_failure("x")` must name a block of the file (OpenSIPS refuses to start too);
        // 1.x wrote `t_on_failure("0")` to disarm, which is `""` now.
        let mut args = args;
        if let (Some(kind), Some(target)) = (arming_kind(&name), args.first().and_then(route_target)) {
            if !target.is_empty() && !self.defined.contains(&fn_name(kind, Some(&target))) {
                if target != "0" {
                    return Err(format!("`{name}` names no {kind}[{target}] block"));
                }
                args[0] = Expr::Str(String::new());
            }
        }
        let Some(sig) = self.cat.sig(&name, args.len()).cloned() else {
            let arities = self.cat.arities(&name);
            return Err(if arities.is_empty() {
                match catalog::module_of(&name) {
                    Some(m) if m.contains(':') => format!("unknown function `{name}` (module {m})"),
                    Some(m) => format!("unknown function `{name}` (module {m} is not in siprox)"),
                    None => format!("unknown function `{name}`"),
                }
            } else {
                format!(
                    "siprox's `{name}` takes {} argument(s), not {}",
                    arities.iter().map(ToString::to_string).collect::<Vec<_>>().join(" or "),
                    args.len()
                )
            });
        };
        let mut out = Vec::new();
        for (i, (a, ty)) in args.iter().zip(&sig.params).enumerate() {
            out.push(self.arg(&name, i, *ty, a)?);
        }
        Ok((format!("{name}({})", out.join(", ")), sig.ret))
    }

    fn route_call(&mut self, args: &[Expr]) -> Conv<(String, Ret)> {
        let target = args.first().and_then(route_target).ok_or("`route()` needs a route name")?;
        let (fname, nparams) =
            self.routes.get(&target).cloned().ok_or_else(|| format!("`route({target})` names no route block"))?;
        let mut out = Vec::new();
        for a in &args[1..] {
            out.push(self.value(a)?.0);
        }
        while out.len() < nparams {
            out.push("()".into());
        }
        Ok((format!("{fname}({})", out.join(", ")), Ret::Code))
    }

    /// One argument, typed by the engine's signature.
    fn arg(&mut self, fname: &str, i: usize, ty: Ty, a: &Expr) -> Conv<String> {
        match a {
            Expr::Str(s) => {
                let num = s.trim().parse::<i64>().ok();
                if let (Some(n), true) = (num, ty == Ty::Int || catalog::numeric_arg(fname, i)) {
                    return Ok(n.to_string());
                }
                if catalog::expands_pvs(fname) || catalog::output_arg(fname, i) {
                    return Ok(rhai_str(s));
                }
                self.interpolate(s)
            }
            Expr::Int(n) if ty == Ty::Str => Ok(rhai_str(&n.to_string())),
            Expr::Ident(w) | Expr::Addr(w) => Ok(rhai_str(w)),
            Expr::Null => Ok("()".into()),
            other => self.value(other).map(|v| v.0),
        }
    }

    /// A string argument: OpenSIPS expands `$pv` in it, Rhai does not, so `"sip:$rU@h"`
    /// becomes `"sip:" + $rU + "@h"` and `"$si"` becomes `$si`.
    fn interpolate(&mut self, s: &str) -> Conv<String> {
        let mut parts: Vec<String> = Vec::new();
        let mut lit = String::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'$' && b.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic() || *c == b'(' || *c == b'?') {
                let end = super::lex::pv_end(b, i);
                let pv = &s[i..end];
                if !lit.is_empty() {
                    parts.push(rhai_str(&std::mem::take(&mut lit)));
                }
                parts.push(self.pv_read(pv)?.0);
                i = end;
            } else {
                let ch = s[i..].chars().next().unwrap_or(' ');
                lit.push(ch);
                i += ch.len_utf8();
            }
        }
        if !lit.is_empty() || parts.is_empty() {
            parts.push(rhai_str(&lit));
        }
        Ok(parts.join(" + "))
    }

    fn arg_str(&mut self, a: &Expr) -> Conv<String> {
        match a {
            Expr::Str(s) => Ok(rhai_str(s)),
            other => self.value(other).map(|v| v.0),
        }
    }

    fn pv_read(&self, text: &str) -> Conv<(String, Kind)> {
        Ok(match catalog::map_pv(text)? {
            PvMap::Pv(p) => {
                let name = p.trim_start_matches('$').split('(').next().unwrap_or("").to_string();
                let kind = if catalog::int_pv(&name) {
                    Kind::Int
                } else if matches!(name.as_str(), "var" | "avp" | "dlg_val" | "param") {
                    Kind::Unknown
                } else {
                    Kind::Str
                };
                (p, kind)
            }
            PvMap::Retcode => ("retcode()".into(), Kind::Int),
            PvMap::Param(n) if n >= 1 && n <= self.cur_params => (format!("p{n}"), Kind::Unknown),
            PvMap::Param(n) => return Err(format!("`$param({n})` outside a route called with {n} argument(s)")),
            PvMap::Branch => return Err("reading `$branch` is not in siprox".into()),
        })
    }

    /// An expression as a Rhai value.
    fn value(&mut self, e: &Expr) -> Conv<(String, Kind)> {
        Ok(match e {
            Expr::Str(s) => {
                placeholder_check(s)?;
                (rhai_str(s), Kind::Str)
            }
            Expr::Int(i) => (i.to_string(), Kind::Int),
            Expr::Addr(a) => (rhai_str(a), Kind::Str),
            Expr::Ident(w) if matches!(w.as_str(), "true" | "yes" | "on") => ("true".into(), Kind::Bool),
            Expr::Ident(w) if matches!(w.as_str(), "false" | "no" | "off") => ("false".into(), Kind::Bool),
            Expr::Ident(w) => match keyword_pv(w) {
                Some(pv) => self.pv_read(pv)?,
                None => return Err(format!("bare word `{w}` (a #!define that was not applied, or an m4 macro?)")),
            },
            Expr::Null => ("()".into(), Kind::Unknown),
            Expr::Pv(p) => self.pv_read(p)?,
            Expr::Paren(inner) => self.value(inner)?,
            Expr::Call { name, args } => {
                let (text, ret) = self.call(name, args)?;
                let kind = match ret {
                    Ret::Bool => Kind::Bool,
                    Ret::Code => Kind::Int,
                    Ret::Value => Kind::Unknown,
                    Ret::Unit => return Err(format!("`{name}()` gives no value")),
                };
                (text, kind)
            }
            Expr::Unary { op: "-", e } => {
                let (v, _) = self.value(e)?;
                (format!("-{}", paren_unless_atom(&v)), Kind::Int)
            }
            Expr::Unary { op: "!", .. } => (self.cond(e)?, Kind::Bool),
            Expr::Unary { op, .. } => return Err(format!("operator `{op}` is not in siprox's script")),
            Expr::Binary { op, l, r } => match *op {
                "+" | "-" | "*" | "/" | "%" | "&" | "|" | "^" => {
                    let (lv, lk) = self.value(l)?;
                    let (rv, rk) = self.value(r)?;
                    let kind = if lk == Kind::Str || rk == Kind::Str {
                        Kind::Str
                    } else if lk == Kind::Int && rk == Kind::Int {
                        Kind::Int
                    } else {
                        Kind::Unknown
                    };
                    (format!("{} {op} {}", operand(l, &lv, op), operand(r, &rv, op)), kind)
                }
                _ => (self.cond(e)?, Kind::Bool),
            },
        })
    }

    /// An expression as a Rhai `bool` (OpenSIPS truth: a code > 0, a value that is set).
    fn cond(&mut self, e: &Expr) -> Conv<String> {
        match e {
            Expr::Paren(inner) => self.cond(inner),
            Expr::Binary { op: op @ ("&&" | "||"), l, r } => {
                let lc = self.cond(l)?;
                let rc = self.cond(r)?;
                Ok(format!("{} {op} {}", logic_operand(l, &lc, op), logic_operand(r, &rc, op)))
            }
            Expr::Binary { op: op @ ("=~" | "!~"), l, r } => {
                let lv = self.value(l)?.0;
                let rv = match &**r {
                    Expr::Str(s) => rhai_str(s),
                    other => self.value(other)?.0,
                };
                Ok(format!("{}pcre_match({lv}, {rv})", if *op == "!~" { "!" } else { "" }))
            }
            Expr::Binary { op, l, r } if matches!(*op, "==" | "!=" | "<" | ">" | "<=" | ">=") => self.compare(op, l, r),
            Expr::Unary { op: "!", e: inner } => {
                let inner = strip_paren(inner);
                if let Expr::Call { name, args } = inner {
                    let (text, ret) = self.call(name, args)?;
                    return match ret {
                        Ret::Bool => Ok(format!("!{text}")),
                        Ret::Code => Ok(format!("{text} < 0")),
                        _ => Err(format!("`{name}()` gives no truth value")),
                    };
                }
                let c = self.cond(inner)?;
                Ok(if is_atom(&c) { format!("!{c}") } else { format!("!({c})") })
            }
            Expr::Call { name, args } => {
                let (text, ret) = self.call(name, args)?;
                match ret {
                    Ret::Bool => Ok(text),
                    Ret::Code => Ok(format!("{text} > 0")),
                    Ret::Value => Ok(format!("{text} != ()")),
                    Ret::Unit => Err(format!("`{name}()` gives no truth value")),
                }
            }
            Expr::Int(i) => Ok((*i > 0).to_string()),
            Expr::Pv(_) => {
                let (v, kind) = self.value(e)?;
                Ok(if kind == Kind::Int { format!("{v} > 0") } else { format!("{v} != ()") })
            }
            other => match self.value(other)? {
                (v, Kind::Bool) => Ok(v),
                (_, _) => Err(format!("`{}` is not a condition siprox can test", short(other))),
            },
        }
    }

    fn compare(&mut self, op: &str, l: &Expr, r: &Expr) -> Conv<String> {
        // `method == "INVITE"` (1.x) is is_method(), which also knows the CSeq method.
        if let (Expr::Ident(w), Expr::Str(m), "==" | "!=") = (l, r, op) {
            if w == "method" {
                return Ok(format!("{}is_method({})", if op == "!=" { "!" } else { "" }, rhai_str(m)));
            }
        }
        if let (Expr::Ident(w), "==" | "!=") = (r, op) {
            if w == "myself" {
                let (v, _) = self.value(l)?;
                return Ok(format!("{}is_myself({v})", if op == "!=" { "!" } else { "" }));
            }
        }
        if let Expr::Null = r {
            let (v, _) = self.value(l)?;
            // siprox's $rU is "" without a user part (docs/script-api.md §7).
            let null = if v == "$rU" { "\"\"" } else { "()" };
            return Ok(format!("{v} {op} {null}"));
        }
        if let Expr::Null = l {
            return self.compare(op, r, l);
        }
        let (lv, lk) = self.value(l)?;
        let (rv, rk) = self.value(r)?;
        let lv = retype(l, lv, rk);
        let rv = retype(r, rv, lk);
        // siprox spells the dialog direction in lower case ("upstream"), OpenSIPS in upper.
        let dir = |e: &Expr, text: String, other: &str| match e {
            Expr::Str(s) if other == "$DLG_dir" => rhai_str(&s.to_ascii_lowercase()),
            _ => text,
        };
        let (lv, rv) = (dir(l, lv.clone(), &rv), dir(r, rv, &lv));
        Ok(format!("{lv} {op} {rv}"))
    }
}

/// A literal written as the other side's type: `$rs == "200"` → `200`, `$rp == 5060` → `"5060"`.
fn retype(e: &Expr, text: String, other: Kind) -> String {
    match (e, other) {
        (Expr::Str(s), Kind::Int) if s.trim().parse::<i64>().is_ok() => s.trim().to_string(),
        (Expr::Int(i), Kind::Str) => rhai_str(&i.to_string()),
        _ => text,
    }
}

/// 1.x keywords that read the message: `uri`, `src_ip`, `method`, …
fn keyword_pv(w: &str) -> Option<&'static str> {
    Some(match w {
        "method" => "$rm",
        "uri" => "$ru",
        "from_uri" => "$fu",
        "to_uri" => "$tu",
        "src_ip" => "$si",
        "src_port" => "$sp",
        "dst_ip" => "$Ri",
        "dst_port" => "$Rp",
        "proto" => "$pr",
        "status" => "$rs",
        _ => return None,
    })
}

/// The route kind a `t_on_*` function arms.
fn arming_kind(name: &str) -> Option<&'static str> {
    match name {
        "t_on_failure" => Some("failure_route"),
        "t_on_reply" => Some("onreply_route"),
        "t_on_branch" => Some("branch_route"),
        _ => None,
    }
}

/// The name a `route(…)` call names.
fn route_target(e: &Expr) -> Option<String> {
    match e {
        Expr::Ident(s) | Expr::Str(s) | Expr::Addr(s) => Some(s.clone()),
        Expr::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Old spellings → today's: `registered()`, numeric `nat_uac_test`, 1.x `load_balance`, 2.x
/// `save`/`lookup` letters, numeric `t_relay` flags, 1.x `rewrite*`.
fn legacy(name: &str, args: &[Expr]) -> Conv<(String, Vec<Expr>)> {
    let mut args = args.to_vec();
    let int_of = |e: &Expr| -> Option<i64> {
        match e {
            Expr::Int(i) => Some(*i),
            Expr::Str(s) => super::lex::number(s.trim()),
            _ => None,
        }
    };
    let name = match name {
        "registered" => "is_registered",
        "rewriteuri" => "seturi",
        "rewritehost" => "sethost",
        "rewriteuser" => "setuser",
        "rewriteport" => "setport",
        "check_from" => "db_is_from_authorized",
        "check_to" => "db_is_to_authorized",
        "lb_disable" => "lb_disable_dst",
        "rewritehostport" => return Err("1.x `rewritehostport`: write `sethost(host); setport(port);`".into()),
        // 1.x `log([level,] text)`: xlog with the level's name (no level: L_DBG).
        "log" => {
            let level = match args.as_slice() {
                [_] => "L_DBG".to_string(),
                [lvl, _] => match int_of(lvl) {
                    Some(n) => log_level_name(n).to_string(),
                    None => return Err("`log` with a level that is not a number".into()),
                },
                _ => return Err("`log` takes one or two arguments".into()),
            };
            let text = args.pop().unwrap_or(Expr::Str(String::new()));
            args = vec![Expr::Str(level), text];
            "xlog"
        }
        "nat_uac_test" | "fix_nated_sdp" => {
            if let Some(mask) = args.first().and_then(int_of) {
                let table = if name == "nat_uac_test" { catalog::NAT_TESTS } else { catalog::SDP_FLAGS };
                let names = catalog::mask_names(mask, table)
                    .ok_or_else(|| format!("`{name}` mask {mask} has bits with no name"))?;
                args[0] = Expr::Str(names);
            }
            name
        }
        "load_balance" => {
            if let Some(alg) = args.get(2).and_then(int_of) {
                args[2] = Expr::Str(if alg == 1 { "r".into() } else { String::new() });
            }
            "lb_start_or_next"
        }
        "save" | "lookup" => {
            if let Some(Expr::Str(flags)) = args.get(1) {
                if catalog::is_letter_flags(flags) {
                    let names =
                        if name == "save" { catalog::save_letters(flags)? } else { catalog::lookup_letters(flags)? };
                    args[1] = Expr::Str(names);
                }
            }
            name
        }
        "t_relay" => {
            if let Some(bits) = args.first().and_then(int_of) {
                let mut flags = Vec::new();
                if bits & 0x02 != 0 {
                    flags.push("no-auto-477");
                }
                if bits & 0x04 != 0 {
                    flags.push("no-dns-failover");
                }
                args[0] = Expr::Str(flags.join(","));
                if args.len() == 1 && flags.is_empty() {
                    args.clear();
                }
            }
            name
        }
        other => other,
    };
    Ok((name.to_string(), args))
}

/// OpenSIPS's numeric log levels by name.
fn log_level_name(n: i64) -> &'static str {
    match n {
        i64::MIN..=-3 => "L_ALERT",
        -2 => "L_CRIT",
        -1 => "L_ERR",
        0 | 1 => "L_WARN",
        2 => "L_NOTICE",
        3 => "L_INFO",
        _ => "L_DBG",
    }
}

fn placeholder_check(s: &str) -> Conv<()> {
    catalog::placeholder(s).map_or(Ok(()), Err)
}

/// A Rhai string literal.
pub fn rhai_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn strip_paren(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(inner) => strip_paren(inner),
        other => other,
    }
}

/// Whether `text` is one operand (a name, a literal, or a call whose `(` closes at the end).
fn is_atom(text: &str) -> bool {
    let t = text.trim();
    if !t.contains(' ') {
        return true;
    }
    let Some(open) = t.find('(') else { return false };
    if open == 0 || t[..open].contains(' ') || t[..open].contains('"') {
        return false;
    }
    let mut depth = 0i32;
    let mut quote = false;
    let mut prev = ' ';
    for (i, c) in t.char_indices().skip(open) {
        match c {
            '"' if prev != '\\' => quote = !quote,
            '(' if !quote => depth += 1,
            ')' if !quote => {
                depth -= 1;
                if depth == 0 {
                    return i == t.len() - 1;
                }
            }
            _ => {}
        }
        prev = c;
    }
    false
}

fn paren_unless_atom(text: &str) -> String {
    if is_atom(text) {
        text.to_string()
    } else {
        format!("({text})")
    }
}

/// An operand of `&&`/`||`: parenthesized when it is the other operator.
fn logic_operand(e: &Expr, text: &str, op: &str) -> String {
    match strip_paren(e) {
        Expr::Binary { op: inner @ ("&&" | "||"), .. } if *inner != op => format!("({text})"),
        _ => text.to_string(),
    }
}

/// An operand of an arithmetic operator: parenthesized when it is itself an operation.
fn operand(e: &Expr, text: &str, op: &str) -> String {
    match strip_paren(e) {
        Expr::Binary { op: inner, .. } if !(*inner == op && matches!(op, "+" | "*")) => format!("({text})"),
        _ => text.to_string(),
    }
}

/// A short rendering of an expression for messages.
fn short(e: &Expr) -> String {
    match e {
        Expr::Str(s) => format!("{s:?}"),
        Expr::Int(i) => i.to_string(),
        Expr::Addr(s) | Expr::Ident(s) | Expr::Pv(s) => s.clone(),
        Expr::Null => "NULL".into(),
        Expr::Call { name, .. } => format!("{name}(…)"),
        Expr::Unary { op, e } => format!("{op}{}", short(e)),
        Expr::Binary { op, l, r } => format!("{} {op} {}", short(l), short(r)),
        Expr::Paren(e) => format!("({})", short(e)),
    }
}

/// Whether a block always ends the flow (its last statement is exit/drop/return).
fn ends_flow(body: &[Stmt]) -> bool {
    body.iter()
        .rev()
        .find(|s| !matches!(s.kind, StmtKind::Comment { .. }))
        .is_some_and(|s| matches!(s.kind, StmtKind::Exit | StmtKind::Drop | StmtKind::Return(_)))
}

/// Whether a route returns a value anywhere (`return(N)`), so callers may test it.
fn returns_value(body: &[Stmt]) -> bool {
    body.iter().any(|s| match &s.kind {
        StmtKind::Return(Some(_)) => true,
        StmtKind::If { then, els, .. } => returns_value(then) || els.as_deref().is_some_and(returns_value),
        StmtKind::Switch { cases, .. } => cases.iter().any(|c| returns_value(&c.body)),
        StmtKind::While { body, .. } | StmtKind::ForEach { body, .. } | StmtKind::Block(body) => returns_value(body),
        _ => false,
    })
}

/// OpenSIPS `switch` falls through from one case to the next until `break`; a Rhai arm
/// does not. Each arm gets its labels (cases with no body of their own join the next) and
/// the statements it really runs: its own, then the next cases' until a `break`, `exit`,
/// `drop` or `return`. A `break` anywhere else cannot be written as a Rhai arm.
fn switch_arms(cases: &[Case]) -> Conv<Vec<(Vec<Option<Expr>>, Vec<Stmt>)>> {
    let is_code = |s: &Stmt| !matches!(s.kind, StmtKind::Comment { .. });
    let mut arms = Vec::new();
    let mut labels = Vec::new();
    let mut default_arm = None;
    for (i, case) in cases.iter().enumerate() {
        labels.push(case.label.clone());
        let own_code = case.body.iter().any(is_code);
        if !own_code && i + 1 < cases.len() {
            continue;
        }
        let mut body = Vec::new();
        for next in &cases[i..] {
            let mut ended = false;
            for s in &next.body {
                if nested_break(s) {
                    return Err(
                        "`break` inside a nested block of a `switch` case cannot be written as a Rhai arm".into()
                    );
                }
                match s.kind {
                    StmtKind::Break => {
                        ended = true;
                        break;
                    }
                    StmtKind::Exit | StmtKind::Drop | StmtKind::Return(_) => {
                        body.push(s.clone());
                        ended = true;
                        break;
                    }
                    _ => body.push(s.clone()),
                }
            }
            if ended {
                break;
            }
        }
        let arm_labels = std::mem::take(&mut labels);
        if arm_labels.iter().any(Option::is_none) {
            // Rhai wants `_` last and alone; cases sharing default's body are redundant.
            default_arm = Some((vec![None], body));
        } else {
            arms.push((arm_labels, body));
        }
    }
    arms.extend(default_arm);
    Ok(arms)
}

/// A `break` below an `if` (not inside a loop of its own).
fn nested_break(s: &Stmt) -> bool {
    fn any_break(stmts: &[Stmt]) -> bool {
        stmts.iter().any(|s| match &s.kind {
            StmtKind::Break => true,
            StmtKind::If { then, els, .. } => any_break(then) || els.as_deref().is_some_and(any_break),
            StmtKind::Block(b) => any_break(b),
            _ => false,
        })
    }
    match &s.kind {
        StmtKind::If { then, els, .. } => any_break(then) || els.as_deref().is_some_and(any_break),
        StmtKind::Block(b) => any_break(b),
        _ => false,
    }
}
