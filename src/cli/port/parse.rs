//! The opensips.cfg grammar: global parameters, `loadmodule`, `modparam`, route blocks of
//! every kind, statements and expressions. A piece that does not parse is kept as
//! [`StmtKind::Unparsed`] / [`Item::Unparsed`] with its lines, and parsing goes on after it:
//! the converter copies such lines into the output as TODO comments.

use super::lex::{Tok, Token};

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Str(String),
    Int(i64),
    /// A bare dotted word: `10.0.1.100`.
    Addr(String),
    /// A bare name: `myself`, `method`, `NAT`, `L_ERR`.
    Ident(String),
    Null,
    /// A pseudo-variable as written (`$avp(x)`).
    Pv(String),
    Call {
        name: String,
        args: Vec<Expr>,
    },
    Unary {
        op: &'static str,
        e: Box<Expr>,
    },
    Binary {
        op: &'static str,
        l: Box<Expr>,
        r: Box<Expr>,
    },
    Paren(Box<Expr>),
}

#[derive(Debug, Clone)]
pub struct Stmt {
    pub kind: StmtKind,
    /// First and last source line of the whole statement.
    pub line: usize,
    pub end_line: usize,
}

#[derive(Debug, Clone)]
pub enum StmtKind {
    /// `trailing`: on the same line as the code before it.
    Comment {
        text: String,
        trailing: bool,
    },
    Expr(Expr),
    Assign {
        target: Expr,
        op: &'static str,
        value: Expr,
    },
    /// `header_end`: last line of `if (…)`.
    If {
        cond: Expr,
        then: Vec<Stmt>,
        els: Option<Vec<Stmt>>,
        header_end: usize,
    },
    Switch {
        subject: Expr,
        cases: Vec<Case>,
    },
    While {
        cond: Expr,
        body: Vec<Stmt>,
    },
    ForEach {
        var: Expr,
        list: Expr,
        body: Vec<Stmt>,
    },
    Block(Vec<Stmt>),
    Exit,
    Drop,
    Break,
    Return(Option<Expr>),
    Unparsed {
        reason: String,
    },
}

#[derive(Debug, Clone)]
pub struct Case {
    /// `None` for `default:`.
    pub label: Option<Expr>,
    pub body: Vec<Stmt>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
}

#[derive(Debug, Clone)]
pub enum Item {
    Comment {
        text: String,
        trailing: bool,
    },
    /// `name = value` with the value as written (up to a comment or the end of the line).
    Global {
        name: String,
        value: String,
        line: usize,
    },
    LoadModule {
        name: String,
        line: usize,
    },
    Modparam {
        module: String,
        param: String,
        value: Value,
        line: usize,
        end_line: usize,
    },
    /// `kind` is `route`, `onreply_route`, …; `args` are what the brackets hold after the
    /// name (`timer_route[t, 10]`).
    Route {
        kind: String,
        name: Option<String>,
        args: Vec<String>,
        body: Vec<Stmt>,
        line: usize,
    },
    Unparsed {
        line: usize,
        end_line: usize,
        reason: String,
    },
}

/// Whether the top-level comment at `i` goes with a setting (to siprox.toml) rather than
/// with a route (to route.rhai): a comment belongs to the item after it, a trailing
/// comment to the item before it.
pub fn comment_is_setting(items: &[Item], i: usize) -> bool {
    let is_setting = |it: &Item| matches!(it, Item::Global { .. } | Item::LoadModule { .. } | Item::Modparam { .. });
    let trailing = matches!(items.get(i), Some(Item::Comment { trailing: true, .. }));
    let owner = if trailing {
        items[..i].iter().rev().find(|it| !matches!(it, Item::Comment { .. }))
    } else {
        items[i + 1..].iter().find(|it| !matches!(it, Item::Comment { .. }))
    };
    owner.is_some_and(is_setting)
}

pub const ROUTE_KINDS: &[&str] = &[
    "route",
    "onreply_route",
    "failure_route",
    "branch_route",
    "local_route",
    "startup_route",
    "timer_route",
    "event_route",
    "error_route",
];

type PResult<T> = Result<T, String>;

/// A comment found inside a statement (`f("a" /* realm */)`) goes on a line of its own
/// before it: the statement's own line is rewritten, so it cannot trail there.
fn own_line(mut c: Stmt) -> Stmt {
    if let StmtKind::Comment { trailing, .. } = &mut c.kind {
        *trailing = false;
    }
    c
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    pos: usize,
    /// Comments met inside an expression or a header, flushed before the statement.
    pending: Vec<Stmt>,
    /// Last line of the last code token taken (comments looked past do not count).
    last_end: usize,
    /// A block ran to the end of the file (reported once, by the innermost block).
    eof_reported: bool,
}

/// Parses a whole file (after the preprocessor).
pub fn parse(src: &str, toks: Vec<Token>) -> Vec<Item> {
    let mut p = Parser { src, toks, pos: 0, pending: Vec::new(), last_end: 1, eof_reported: false };
    let mut items = Vec::new();
    while p.pos < p.toks.len() {
        let start = p.pos;
        match p.item() {
            Ok(mut more) => items.append(&mut more),
            Err(reason) => {
                p.pos = start;
                p.pending.clear();
                p.peek();
                items.append(&mut p.take_pending_items());
                let Some(first) = p.toks.get(p.pos) else { break };
                let line = first.line;
                let end_line = p.skip_item();
                items.push(Item::Unparsed { line, end_line, reason });
            }
        }
    }
    items
}

impl Parser<'_> {
    fn at(&self, k: usize) -> Option<&Token> {
        self.toks.get(self.pos + k)
    }

    /// The next token that is not a comment; comments passed over go to `pending`.
    fn peek(&mut self) -> Option<&Tok> {
        while let Some(t) = self.toks.get(self.pos) {
            if let Tok::Comment(text) = &t.tok {
                self.pending.push(Stmt {
                    kind: StmtKind::Comment { text: text.clone(), trailing: !t.first_on_line },
                    line: t.line,
                    end_line: t.end_line,
                });
                self.pos += 1;
            } else {
                break;
            }
        }
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn next(&mut self) -> PResult<Token> {
        self.peek();
        let t = self.toks.get(self.pos).cloned().ok_or("unexpected end of file")?;
        self.pos += 1;
        self.last_end = t.end_line;
        Ok(t)
    }

    fn is_op(&mut self, op: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(o)) if *o == op)
    }

    fn is_ident(&mut self, word: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(w)) if w == word)
    }

    fn expect(&mut self, op: &str) -> PResult<Token> {
        if self.is_op(op) {
            self.next()
        } else {
            Err(format!("expected `{op}`, found {}", self.describe()))
        }
    }

    fn describe(&mut self) -> String {
        match self.peek() {
            None => "end of file".into(),
            Some(Tok::Ident(w)) => format!("`{w}`"),
            Some(Tok::Op(o)) => format!("`{o}`"),
            Some(Tok::Str(s)) => format!("string {s:?}"),
            Some(Tok::Int(i)) => format!("`{i}`"),
            Some(Tok::Addr(a)) => format!("`{a}`"),
            Some(Tok::Pv(p)) => format!("`{p}`"),
            Some(Tok::Stray(c)) => format!("`{c}` (not opensips.cfg syntax; an m4 or template placeholder?)"),
            Some(Tok::Comment(_)) => "a comment".into(),
            Some(Tok::M4(m)) => format!(
                "an m4 macro `{}…` (expand the template with m4 first, or port by hand)",
                m.chars().take_while(|c| *c != '(').collect::<String>()
            ),
        }
    }

    fn prev_line(&self) -> usize {
        self.last_end
    }

    fn take_pending_items(&mut self) -> Vec<Item> {
        // Only comments are ever pending.
        std::mem::take(&mut self.pending)
            .into_iter()
            .filter_map(|s| match s.kind {
                StmtKind::Comment { text, trailing } => Some(Item::Comment { text, trailing }),
                _ => None,
            })
            .collect()
    }

    /// One top-level item, with the comments before it.
    fn item(&mut self) -> PResult<Vec<Item>> {
        let first = self.peek().cloned();
        let mut out = self.take_pending_items();
        let Some(first) = first else { return Ok(out) };
        let line = self.at(0).map_or(1, |t| t.line);
        match first {
            Tok::Ident(w) if w == "loadmodule" => {
                self.next()?;
                let name = match self.next()?.tok {
                    Tok::Str(s) => s,
                    _ => return Err("loadmodule wants a quoted module name".into()),
                };
                out.push(Item::LoadModule { name, line });
            }
            Tok::Ident(w) if w == "modparam" => {
                self.next()?;
                self.expect("(")?;
                let module = self.string_arg()?;
                self.expect(",")?;
                let param = self.string_arg()?;
                self.expect(",")?;
                let value = match self.next()?.tok {
                    Tok::Str(s) => Value::Str(s),
                    Tok::Int(i) => Value::Int(i),
                    Tok::Op("-") => match self.next()?.tok {
                        Tok::Int(i) => Value::Int(-i),
                        _ => return Err("bad modparam value".into()),
                    },
                    Tok::Ident(w) => Value::Str(w),
                    _ => return Err("modparam value must be a string or an integer".into()),
                };
                self.expect(")")?;
                let end_line = self.prev_line();
                if self.is_op(";") {
                    self.next()?;
                }
                out.push(Item::Modparam { module, param, value, line, end_line });
            }
            Tok::Ident(w) if w == "include_file" || w == "import_file" => {
                self.next()?;
                let file = self.string_arg()?;
                return Err(format!(
                    "`{w} \"{file}\"`: siprox port does not follow includes; convert that file on its own and merge"
                ));
            }
            Tok::Ident(w) if ROUTE_KINDS.contains(&w.as_str()) => {
                self.next()?;
                let (name, args) = self.route_name()?;
                self.expect("{")?;
                out.append(&mut self.take_pending_items());
                let body = self.block_rest()?;
                out.push(Item::Route { kind: w, name, args, body, line });
            }
            Tok::Ident(w) if matches!(self.at(1).map(|t| &t.tok), Some(Tok::Op("="))) => {
                self.next()?;
                let eq = self.next()?;
                let (value, comment) = self.rest_of_line(eq.end);
                out.push(Item::Global { name: w, value, line });
                if let Some(c) = comment {
                    out.push(c);
                }
            }
            _ => {
                return Err(format!(
                    "expected a global parameter, loadmodule, modparam or a route block, found {}",
                    self.describe()
                ))
            }
        }
        Ok(out)
    }

    fn string_arg(&mut self) -> PResult<String> {
        match self.next()?.tok {
            Tok::Str(s) | Tok::Ident(s) => Ok(s),
            _ => Err("expected a quoted name".into()),
        }
    }

    /// `[name]`, `[name, arg…]`, `(name)` or nothing.
    fn route_name(&mut self) -> PResult<(Option<String>, Vec<String>)> {
        let close = if self.is_op("[") {
            "]"
        } else if self.is_op("(") {
            ")"
        } else {
            return Ok((None, Vec::new()));
        };
        self.next()?;
        let mut parts = Vec::new();
        loop {
            let t = self.next()?;
            match t.tok {
                Tok::Op(o) if o == close => break,
                Tok::Op(",") => {}
                Tok::Ident(s) | Tok::Str(s) | Tok::Addr(s) => parts.push(s),
                Tok::Int(i) => parts.push(i.to_string()),
                _ => return Err("bad route name".into()),
            }
        }
        let mut it = parts.into_iter();
        Ok((it.next(), it.collect()))
    }

    /// The raw text of a global's value up to a comment or the end of the line; the
    /// tokens on that line are consumed; a comment ending it is returned as an item.
    fn rest_of_line(&mut self, from: usize) -> (String, Option<Item>) {
        let line_end = self.src[from..].find('\n').map_or(self.src.len(), |n| from + n);
        let mut comment = None;
        let mut value_end = line_end;
        while let Some(t) = self.toks.get(self.pos) {
            if t.start >= line_end {
                break;
            }
            if let Tok::Comment(text) = &t.tok {
                value_end = value_end.min(t.start);
                comment = Some(Item::Comment { text: text.clone(), trailing: true });
            }
            self.pos += 1;
        }
        (self.src[from..value_end].trim().to_string(), comment)
    }

    /// Skips a top-level item that did not parse; returns its last line.
    fn skip_item(&mut self) -> usize {
        let mut depth = 0i32;
        let mut last = self.toks.get(self.pos).map_or(1, |t| t.line);
        let mut first = true;
        while let Some(t) = self.toks.get(self.pos) {
            let starts_item = t.first_on_line
                && depth == 0
                && matches!(&t.tok, Tok::Ident(w) if ROUTE_KINDS.contains(&w.as_str()) || w == "loadmodule" || w == "modparam"
                    || matches!(self.toks.get(self.pos + 1).map(|n| &n.tok), Some(Tok::Op("="))));
            let own_line_comment = t.first_on_line && depth == 0 && matches!(t.tok, Tok::Comment(_) | Tok::M4(_));
            if (starts_item || own_line_comment) && !first {
                break;
            }
            first = false;
            match t.tok {
                Tok::Op("{") => depth += 1,
                Tok::Op("}") => depth -= 1,
                _ => {}
            }
            last = t.end_line;
            self.pos += 1;
            if depth <= 0 && matches!(t.tok, Tok::Op("}")) {
                depth = 0;
            }
        }
        last
    }

    /// Statements up to the `}` closing a block (consumed).
    fn block_rest(&mut self) -> PResult<Vec<Stmt>> {
        let mut out = Vec::new();
        loop {
            self.peek();
            out.append(&mut self.pending);
            match self.peek() {
                // A missing `}` closes the block at the end of the file: what parsed is kept.
                None => {
                    out.append(&mut self.pending);
                    if !self.eof_reported {
                        self.eof_reported = true;
                        let line = self.last_end;
                        out.push(Stmt {
                            kind: StmtKind::Unparsed {
                                reason: "a `}` is missing: the block runs to the end of the file".into(),
                            },
                            line,
                            end_line: line,
                        });
                    }
                    return Ok(out);
                }
                Some(Tok::Op("}")) => {
                    self.next()?;
                    out.append(&mut self.pending);
                    return Ok(out);
                }
                Some(Tok::Op(";")) => {
                    self.next()?;
                }
                _ => {
                    let start = self.pos;
                    let line = self.toks[start].line;
                    match self.stmt() {
                        Ok(s) => {
                            // Comments looked past after the statement (hunting for an
                            // `else`) come after it; those inside its header, before.
                            let (after, before): (Vec<Stmt>, Vec<Stmt>) =
                                std::mem::take(&mut self.pending).into_iter().partition(|c| c.line > s.end_line);
                            out.extend(before.into_iter().map(own_line));
                            out.push(s);
                            out.extend(after);
                        }
                        Err(reason) => {
                            self.pending.clear();
                            self.pos = start;
                            let end_line = self.skip_stmt();
                            out.push(Stmt { kind: StmtKind::Unparsed { reason }, line, end_line });
                        }
                    }
                }
            }
        }
    }

    /// Skips a statement that did not parse: to its `;`, past its block, or up to the `}`
    /// closing the block it is in. Returns its last line.
    fn skip_stmt(&mut self) -> usize {
        let mut depth = 0i32;
        let mut parens = 0i32;
        let mut last = self.toks.get(self.pos).map_or(1, |t| t.line);
        let mut first = true;
        while let Some(t) = self.toks.get(self.pos) {
            // A new line at depth 0 starts the next statement (a lost `;`, a stray quote).
            if t.first_on_line && !first && depth == 0 && parens <= 0 {
                break;
            }
            first = false;
            match t.tok {
                Tok::Op("}") if depth == 0 => break,
                Tok::Op("{") => depth += 1,
                Tok::Op("}") => depth -= 1,
                Tok::Op("(") => parens += 1,
                Tok::Op(")") => parens -= 1,
                _ => {}
            }
            last = t.end_line;
            self.pos += 1;
            let closed_block = matches!(t.tok, Tok::Op("}")) && depth == 0;
            if (matches!(t.tok, Tok::Op(";")) && depth == 0 && parens <= 0)
                || (closed_block
                    && !matches!(self.toks.get(self.pos).map(|n| &n.tok), Some(Tok::Ident(w)) if w == "else"))
            {
                break;
            }
        }
        last
    }

    /// A statement or a `{ block }`, as the body of `if`/`else`/`while`.
    fn body(&mut self) -> PResult<Vec<Stmt>> {
        if self.is_op("{") {
            self.next()?;
            return self.block_rest();
        }
        let s = self.stmt()?;
        let (after, before): (Vec<Stmt>, Vec<Stmt>) =
            std::mem::take(&mut self.pending).into_iter().partition(|c| c.line > s.end_line);
        let mut out: Vec<Stmt> = before.into_iter().map(own_line).collect();
        out.push(s);
        // Comments after a brace-less body belong to the enclosing block.
        self.pending = after;
        Ok(out)
    }

    fn end_stmt(&mut self) -> PResult<()> {
        if self.is_op(";") {
            self.next()?;
            return Ok(());
        }
        // OpenSIPS tolerates a missing `;` before `}`.
        if self.is_op("}") {
            return Ok(());
        }
        Err(format!("expected `;`, found {}", self.describe()))
    }

    fn stmt(&mut self) -> PResult<Stmt> {
        self.peek();
        let line = self.at(0).map_or(1, |t| t.line);
        // Comments inside a header (`if (a /* why */)`) go before the statement, not into
        // its block.
        let mut header_comments = Vec::new();
        let kind = match self.peek().cloned() {
            Some(Tok::Op("{")) => {
                self.next()?;
                StmtKind::Block(self.block_rest()?)
            }
            Some(Tok::Ident(w)) => match w.as_str() {
                "if" => {
                    self.next()?;
                    self.expect("(")?;
                    let cond = self.expr()?;
                    self.expect(")")?;
                    let header_end = self.prev_line();
                    header_comments = std::mem::take(&mut self.pending);
                    let then = self.body()?;
                    let els = if self.is_ident("else") {
                        self.next()?;
                        Some(self.body()?)
                    } else {
                        None
                    };
                    StmtKind::If { cond, then, els, header_end }
                }
                "switch" => {
                    self.next()?;
                    self.expect("(")?;
                    let subject = self.expr()?;
                    self.expect(")")?;
                    self.expect("{")?;
                    header_comments = std::mem::take(&mut self.pending);
                    StmtKind::Switch { subject, cases: self.cases()? }
                }
                "while" => {
                    self.next()?;
                    self.expect("(")?;
                    let cond = self.expr()?;
                    self.expect(")")?;
                    header_comments = std::mem::take(&mut self.pending);
                    StmtKind::While { cond, body: self.body()? }
                }
                "for" => {
                    self.next()?;
                    self.expect("(")?;
                    let var = match self.next()?.tok {
                        Tok::Pv(p) => Expr::Pv(p),
                        _ => return Err("`for each` wants a variable".into()),
                    };
                    if !self.is_ident("in") {
                        return Err(format!("expected `in`, found {}", self.describe()));
                    }
                    self.next()?;
                    let list = self.expr()?;
                    self.expect(")")?;
                    StmtKind::ForEach { var, list, body: self.body()? }
                }
                "exit" | "drop" | "break" => {
                    self.next()?;
                    // `exit()` is accepted as well as `exit`.
                    if self.is_op("(") {
                        self.next()?;
                        self.expect(")")?;
                    }
                    self.end_stmt()?;
                    match w.as_str() {
                        "exit" => StmtKind::Exit,
                        "drop" => StmtKind::Drop,
                        _ => StmtKind::Break,
                    }
                }
                "return" => {
                    self.next()?;
                    let value = if self.is_op(";") || self.is_op("}") { None } else { Some(self.expr()?) };
                    self.end_stmt()?;
                    StmtKind::Return(value)
                }
                _ => self.simple()?,
            },
            _ => self.simple()?,
        };
        header_comments.append(&mut self.pending);
        self.pending = header_comments;
        Ok(Stmt { kind, line, end_line: self.prev_line() })
    }

    /// An expression statement or an assignment.
    fn simple(&mut self) -> PResult<StmtKind> {
        let target = self.expr()?;
        let kind = match self.peek() {
            Some(Tok::Op(op @ ("=" | ":=" | "+=" | "-="))) => {
                let op = *op;
                self.next()?;
                let value = self.expr()?;
                StmtKind::Assign { target, op, value }
            }
            _ => StmtKind::Expr(target),
        };
        self.end_stmt()?;
        Ok(kind)
    }

    /// `case …:` groups up to the `}` closing the switch (consumed).
    fn cases(&mut self) -> PResult<Vec<Case>> {
        let mut cases: Vec<Case> = Vec::new();
        loop {
            self.peek();
            let mut comments = std::mem::take(&mut self.pending);
            match self.peek().cloned() {
                Some(Tok::Op("}")) => {
                    self.next()?;
                    if let Some(c) = cases.last_mut() {
                        c.body.append(&mut comments);
                    }
                    return Ok(cases);
                }
                Some(Tok::Ident(w)) if w == "case" || w == "default" => {
                    self.next()?;
                    let label = if w == "case" { Some(self.unary()?) } else { None };
                    self.expect(":")?;
                    if let Some(c) = cases.last_mut() {
                        c.body.append(&mut comments);
                    }
                    cases.push(Case { label, body: Vec::new() });
                }
                Some(Tok::Op(";")) => {
                    self.next()?;
                }
                None => return Err("missing `}` of switch".into()),
                _ => {
                    let Some(case) = cases.last_mut() else {
                        return Err(format!("expected `case` or `default`, found {}", self.describe()));
                    };
                    case.body.append(&mut comments);
                    let s = self.stmt()?;
                    let case = cases.last_mut().ok_or("no case")?;
                    case.body.append(&mut self.pending);
                    case.body.push(s);
                }
            }
        }
    }

    // Expressions, loosest binding first: || && comparisons | ^ & + - * / % unary.

    fn expr(&mut self) -> PResult<Expr> {
        self.binary(0)
    }

    fn binary(&mut self, level: usize) -> PResult<Expr> {
        const LEVELS: &[&[&str]] = &[
            &["||"],
            &["&&"],
            &["==", "!=", "=~", "!~", "<", ">", "<=", ">="],
            &["|"],
            &["^"],
            &["&"],
            &["+", "-"],
            &["*", "/", "%"],
        ];
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut l = self.binary(level + 1)?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op(o)) if LEVELS[level].contains(o) => *o,
                _ => return Ok(l),
            };
            self.next()?;
            let r = self.binary(level + 1)?;
            l = Expr::Binary { op, l: Box::new(l), r: Box::new(r) };
        }
    }

    fn unary(&mut self) -> PResult<Expr> {
        match self.peek() {
            Some(Tok::Op(op @ ("!" | "-" | "~"))) => {
                let op = *op;
                self.next()?;
                // OpenSIPS's `!` negates a whole comparison: `!$ru =~ "re"` is `!($ru =~ "re")`.
                let e = if op == "!" { self.binary(2)? } else { self.unary()? };
                if let (Expr::Int(i), "-") = (&e, op) {
                    return Ok(Expr::Int(-i));
                }
                Ok(Expr::Unary { op, e: Box::new(e) })
            }
            _ => self.primary(),
        }
    }

    /// A function argument: an expression, or an unquoted socket (`udp:10.0.0.1:5060`),
    /// which OpenSIPS accepts in `force_send_socket()` and friends.
    fn arg(&mut self) -> PResult<Expr> {
        let is_proto = matches!(self.peek(), Some(Tok::Ident(w)) if matches!(w.as_str(), "udp" | "tcp" | "tls" | "sctp" | "ws" | "wss"));
        if is_proto && matches!(self.at(1).map(|t| &t.tok), Some(Tok::Op(":"))) {
            let start = self.toks[self.pos].start;
            let mut end = start;
            while let Some(t) = self.toks.get(self.pos) {
                if matches!(t.tok, Tok::Op(",") | Tok::Op(")")) {
                    break;
                }
                end = t.end;
                self.next()?;
            }
            return Ok(Expr::Str(self.src[start..end].to_string()));
        }
        self.expr()
    }

    fn primary(&mut self) -> PResult<Expr> {
        let what = self.describe();
        let t = self.next()?;
        Ok(match t.tok {
            Tok::Str(s) => Expr::Str(s),
            Tok::Int(i) => Expr::Int(i),
            Tok::Addr(a) => Expr::Addr(a),
            Tok::Pv(p) => Expr::Pv(p),
            Tok::Op("(") => {
                let e = self.expr()?;
                self.expect(")")?;
                Expr::Paren(Box::new(e))
            }
            Tok::Ident(w) if w.eq_ignore_ascii_case("null") => Expr::Null,
            Tok::Ident(w) if self.is_op("(") => {
                self.next()?;
                let mut args = Vec::new();
                if !self.is_op(")") {
                    loop {
                        args.push(self.arg()?);
                        if self.is_op(",") {
                            self.next()?;
                        } else {
                            break;
                        }
                    }
                }
                self.expect(")")?;
                Expr::Call { name: w, args }
            }
            Tok::Ident(w) => Expr::Ident(w),
            _ => return Err(format!("expected a value, found {what}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::lex::tokenize;
    use super::*;

    fn items(src: &str) -> Vec<Item> {
        parse(src, tokenize(src))
    }

    fn route_body(src: &str) -> Vec<Stmt> {
        let all = items(&format!("route {{\n{src}\n}}"));
        match all.into_iter().find(|i| matches!(i, Item::Route { .. })) {
            Some(Item::Route { body, .. }) => body,
            other => panic!("no route: {other:?}"),
        }
    }

    #[test]
    fn globals_modules_and_modparams() {
        let it = items(
            "socket=udp:127.0.0.1:5060   # CUSTOMIZE ME\nloadmodule \"tm.so\"\nmodparam(\"tm\", \"fr_timeout\", 5)\nmodparam(\"dialog\", \"db_url\",\n\t\"mysql://x@h/db\") # c\n",
        );
        assert!(
            matches!(&it[0], Item::Global { name, value, line: 1 } if name == "socket" && value == "udp:127.0.0.1:5060")
        );
        assert!(matches!(&it[1], Item::Comment { trailing: true, .. }));
        assert!(matches!(&it[2], Item::LoadModule { name, .. } if name == "tm.so"));
        assert!(matches!(&it[3], Item::Modparam { value: Value::Int(5), .. }));
        assert!(
            matches!(&it[4], Item::Modparam { line: 4, end_line: 5, value: Value::Str(v), .. } if v == "mysql://x@h/db")
        );
    }

    #[test]
    fn route_kinds_and_names() {
        let it = items("route[relay] { exit; }\nfailure_route[GW] {}\nonreply_route { return(1); }\ntimer_route[t, 10] {}\nevent_route[E_UL_AOR_INSERT] {}\nroute(2) {}\n");
        let names: Vec<_> = it
            .iter()
            .filter_map(|i| match i {
                Item::Route { kind, name, args, .. } => {
                    Some(format!("{kind}:{}:{}", name.clone().unwrap_or_default(), args.join(",")))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            names,
            [
                "route:relay:",
                "failure_route:GW:",
                "onreply_route::",
                "timer_route:t:10",
                "event_route:E_UL_AOR_INSERT:",
                "route:2:"
            ]
        );
    }

    #[test]
    fn if_else_without_braces_and_legacy_semicolons() {
        let b = route_body("if (is_method(\"CANCEL\")) {\n if (t_check_trans())\n  t_relay();\n exit;\n};\nelse_x();");
        assert!(matches!(&b[0].kind, StmtKind::If { then, els: None, .. } if then.len() == 2));
        assert!(matches!(&b[1].kind, StmtKind::Expr(Expr::Call { name, .. }) if name == "else_x"));
    }

    #[test]
    fn expressions_bind_as_in_opensips() {
        let b = route_body("if (!a() && $rU==NULL || $ru=~\"^sip:\" ) x();");
        let StmtKind::If { cond, .. } = &b[0].kind else { panic!() };
        let Expr::Binary { op: "||", l, r } = cond else { panic!("{cond:?}") };
        assert!(matches!(&**l, Expr::Binary { op: "&&", .. }));
        assert!(matches!(&**r, Expr::Binary { op: "=~", .. }));
    }

    #[test]
    fn not_negates_a_whole_comparison() {
        let b = route_body("if (!$ru=~\"^sip:\" && !a()) x();");
        let StmtKind::If { cond, .. } = &b[0].kind else { panic!() };
        let Expr::Binary { op: "&&", l, r } = cond else { panic!("{cond:?}") };
        assert!(matches!(&**l, Expr::Unary { op: "!", e } if matches!(&**e, Expr::Binary { op: "=~", .. })));
        assert!(matches!(&**r, Expr::Unary { op: "!", e } if matches!(&**e, Expr::Call { .. })));
    }

    #[test]
    fn switch_with_fallthrough_cases_and_default() {
        let b = route_body(
            "switch ($retcode) {\ncase 1:\n x(); break;\ncase -1:\ncase -3:\n y(); exit;\ndefault:\n z();\n}",
        );
        let StmtKind::Switch { cases, .. } = &b[0].kind else { panic!() };
        assert_eq!(cases.len(), 4);
        assert_eq!(cases[1].label, Some(Expr::Int(-1)));
        assert!(cases[1].body.is_empty());
        assert!(cases[3].label.is_none());
    }

    #[test]
    fn assignments_loops_and_for_each() {
        let b = route_body("$var(i) = 0;\nwhile ($var(i) < 3) { $var(i) += 1; }\nfor ($var(c) in $(avp(list)[*])) { xlog(\"$var(c)\"); }\n$avp(x) := \"a\" + $rU;");
        assert!(matches!(&b[0].kind, StmtKind::Assign { op: "=", .. }));
        assert!(matches!(&b[1].kind, StmtKind::While { .. }));
        assert!(matches!(&b[2].kind, StmtKind::ForEach { .. }));
        assert!(matches!(&b[3].kind, StmtKind::Assign { op: ":=", value: Expr::Binary { op: "+", .. }, .. }));
    }

    #[test]
    fn a_broken_statement_is_kept_and_parsing_goes_on() {
        let b = route_body("x();\nfoo(`bar');\ny();");
        assert!(matches!(&b[1].kind, StmtKind::Unparsed { .. }));
        assert_eq!((b[1].line, b[1].end_line), (3, 3));
        assert!(matches!(&b[2].kind, StmtKind::Expr(Expr::Call { name, .. }) if name == "y"));
    }

    #[test]
    fn unquoted_sockets_and_includes() {
        let b = route_body("force_send_socket(udp:10.0.0.1:5060);");
        assert!(
            matches!(&b[0].kind, StmtKind::Expr(Expr::Call { args, .. }) if args == &[Expr::Str("udp:10.0.0.1:5060".into())])
        );
        let it = items("include_file \"extra.cfg\"\nroute {}\n");
        assert!(matches!(&it[0], Item::Unparsed { reason, .. } if reason.contains("includes")), "{it:?}");
        assert!(matches!(&it[1], Item::Route { .. }));
    }

    #[test]
    fn stray_code_at_top_level_is_kept() {
        let it = items("route { x(); }\nif (!t_relay()) {\n sl_reply_error();\n}\n}\nroute[a] {}\n");
        assert!(matches!(&it[1], Item::Unparsed { line: 2, end_line: 5, .. }), "{it:?}");
        assert!(matches!(&it[2], Item::Route { .. }));
    }

    #[test]
    fn comments_inside_blocks_are_statements() {
        let b = route_body("# one\nx(); # two\n/* three */");
        assert!(matches!(&b[0].kind, StmtKind::Comment { trailing: false, .. }));
        assert!(matches!(&b[2].kind, StmtKind::Comment { trailing: true, .. }));
        assert!(matches!(&b[3].kind, StmtKind::Comment { .. }));
    }
}
