//! `#!define` / `#!ifdef` style preprocessor lines (as Kamailio-flavoured configs use them).
//! To OpenSIPS they are comments, so the output keeps them as comments; the converter also
//! applies them: lines of a branch not taken become comments, and a defined name used as a
//! word in code is replaced by its value. Line numbers never change.

use std::collections::HashMap;

/// The file after the preprocessor, and what it did, for the report.
pub struct Preprocessed {
    pub text: String,
    pub notes: Vec<(usize, String)>,
}

enum Frame {
    /// Inside `#!ifdef`: whether this branch is taken, and whether the enclosing one is.
    If { taken: bool, outer: bool, name: String, line: usize },
}

pub fn preprocess(src: &str) -> Preprocessed {
    let mut defines: HashMap<String, String> = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut out = String::with_capacity(src.len());
    let mut notes = Vec::new();
    for (i, line) in src.split_inclusive('\n').enumerate() {
        let n = i + 1;
        let active = stack.iter().all(|Frame::If { taken, .. }| *taken);
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("#!") {
            let mut words = rest.split_whitespace();
            let word = words.next().unwrap_or("");
            let name = words.next().unwrap_or("").to_string();
            let value = rest.trim_start().splitn(3, char::is_whitespace).nth(2).unwrap_or("").trim().to_string();
            match word {
                "define" | "trydef" | "redefine" if active => {
                    if word != "trydef" || !defines.contains_key(&name) {
                        defines.insert(name, value);
                    }
                }
                "undef" if active => {
                    defines.remove(&name);
                }
                "ifdef" | "ifndef" => {
                    let taken = defines.contains_key(&name) == (word == "ifdef");
                    stack.push(Frame::If { taken, outer: active, name, line: n });
                }
                "else" => {
                    if let Some(Frame::If { taken, .. }) = stack.last_mut() {
                        *taken = !*taken;
                    }
                }
                "endif" => {
                    if let Some(Frame::If { outer, name, line, .. }) = stack.pop() {
                        if outer {
                            notes.push((
                                line,
                                format!(
                                    "`#!ifdef {name}` … line {n}: applied as `{name}` is{} defined",
                                    if defines.contains_key(&name) { "" } else { " not" }
                                ),
                            ));
                        }
                    }
                }
                "define" | "trydef" | "redefine" | "undef" => {}
                other => notes.push((n, format!("preprocessor directive `#!{other}` is not applied"))),
            }
            out.push_str(line);
            continue;
        }
        if !active {
            out.push_str("# ");
            out.push_str(line);
            continue;
        }
        out.push_str(&substitute(line, &defines));
    }
    Preprocessed { text: out, notes }
}

/// Replaces defined names used as whole words outside strings and comments.
fn substitute(line: &str, defines: &HashMap<String, String>) -> String {
    if defines.values().all(String::is_empty) {
        return line.to_string();
    }
    let mut out = String::with_capacity(line.len());
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let flush = |word: &mut String, out: &mut String| {
        match defines.get(word.as_str()) {
            Some(v) if !v.is_empty() => out.push_str(v),
            _ => out.push_str(word),
        }
        word.clear();
    };
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == q {
                quote = None;
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        flush(&mut word, &mut out);
        if c == '#' || (c == '/' && chars.peek() == Some(&'/')) {
            out.push(c);
            out.extend(chars.by_ref());
            break;
        }
        if c == '"' || c == '\'' {
            quote = Some(c);
        }
        out.push(c);
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_not_taken_become_comments_and_names_are_replaced() {
        let src = "#!define WITH_NAT\n#!define FLT_NAT 5\n#!ifdef WITH_AUTH\nauth();\n#!else\nnoauth();\n#!endif\n#!ifndef WITH_NAT\nx();\n#!endif\nsetflag(FLT_NAT); xlog(\"FLT_NAT\"); # FLT_NAT\n";
        let p = preprocess(src);
        let lines: Vec<&str> = p.text.lines().collect();
        assert_eq!(lines.len(), 11);
        assert_eq!(lines[3], "# auth();");
        assert_eq!(lines[5], "noauth();");
        assert_eq!(lines[8], "# x();");
        assert_eq!(lines[10], "setflag(5); xlog(\"FLT_NAT\"); # FLT_NAT");
        assert_eq!(p.notes.len(), 2);
    }
}
