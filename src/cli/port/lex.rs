//! Tokens of the opensips.cfg language. Comments are tokens too, so the converter can keep
//! them in place; every token knows its line and byte span, so a statement that cannot be
//! converted is copied into the output as the original lines.

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// A name: `route`, `t_relay`, `L_ERR`, `myself`, `NAT`.
    Ident(String),
    /// A decimal or hexadecimal integer.
    Int(i64),
    /// A bare address or dotted word that is not a number: `10.0.1.100`, `1.2.3`.
    Addr(String),
    /// A quoted string, escapes decoded as OpenSIPS does (`\n`, `\r`, `\t`, `\\`, `\"`;
    /// any other `\x` keeps its backslash, which is what regular expressions rely on).
    Str(String),
    /// A pseudo-variable as written: `$ru`, `$avp(x)`, `$(avp(x)[0])`, `$?`.
    Pv(String),
    /// An operator or punctuation: `==`, `=~`, `:=`, `(`, `;`, …
    Op(&'static str),
    /// `#…`, `//…` or `/*…*/`, text without the markers.
    Comment(String),
    /// A character the language does not have (an m4 back-quote, say).
    Stray(char),
    /// A whole m4 macro call with quoted arguments (`` ifelse(X, `yes', `…') ``), which a
    /// generator was meant to expand: its text, possibly over several lines.
    M4(String),
}

/// m4's built-in macros that menuconfig-style templates use.
const M4_MACROS: &[&str] =
    &["ifelse", "ifdef", "define", "undefine", "include", "sinclude", "divert", "dnl", "m4_include"];

#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    /// 1-based line of the token's first character.
    pub line: usize,
    /// 1-based line of its last character (differs for block comments and strings).
    pub end_line: usize,
    /// Byte span in the source.
    pub start: usize,
    pub end: usize,
    /// Nothing but blanks before it on its line.
    pub first_on_line: bool,
}

/// Longest operators first, so `==` wins over `=`.
const OPS: &[&str] = &[
    ":=", "+=", "-=", "==", "!=", "=~", "!~", "<=", ">=", "&&", "||", "(", ")", "{", "}", "[", "]", ",", ";", ":", "=",
    "<", ">", "!", "+", "-", "*", "/", "%", "&", "|", "^", "~",
];

/// Splits `src` into tokens; never fails (unknown characters become [`Tok::Stray`]).
pub fn tokenize(src: &str) -> Vec<Token> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    let mut line_has_token = false;
    // m4 quotes are `…': a `'` closing one is not the start of a string.
    let mut m4_quotes = 0usize;
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            line_has_token = false;
            m4_quotes = 0;
            i += 1;
            continue;
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let start_line = line;
        let tok = if c == b'#' || (c == b'/' && b.get(i + 1) == Some(&b'/')) {
            let skip = if c == b'#' { 1 } else { 2 };
            let end = src[i..].find('\n').map_or(b.len(), |n| i + n);
            let text = src[i + skip..end].trim_end().to_string();
            i = end;
            Tok::Comment(text)
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let end = src[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n);
            let text = src[i + 2..end].to_string();
            line += text.matches('\n').count();
            i = (end + 2).min(b.len());
            Tok::Comment(text)
        } else if c == b'\'' && m4_quotes > 0 {
            m4_quotes -= 1;
            i += 1;
            Tok::Stray('\'')
        } else if c == b'"' || c == b'\'' {
            let (text, next) = string_at(src, i);
            i = next;
            Tok::Str(text)
        } else if c == b'$' {
            let end = pv_end(b, i);
            i = end;
            Tok::Pv(src[start..end].to_string())
        } else if c.is_ascii_digit() {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'.' || b[j] == b'_') {
                j += 1;
            }
            let text = &src[i..j];
            i = j;
            number(text).map_or_else(|| Tok::Addr(text.to_string()), Tok::Int)
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            let text = src[i..j].to_string();
            match m4_call_end(src, &text, j) {
                Some(end) => {
                    line += src[i..end].matches('\n').count();
                    i = end;
                    Tok::M4(src[start..end].to_string())
                }
                None => {
                    i = j;
                    Tok::Ident(text)
                }
            }
        } else if let Some(op) = OPS.iter().find(|op| src[i..].starts_with(**op)) {
            i += op.len();
            Tok::Op(op)
        } else {
            let ch = src[i..].chars().next().unwrap_or('?');
            i += ch.len_utf8();
            if ch == '`' {
                m4_quotes += 1;
            }
            Tok::Stray(ch)
        };
        out.push(Token { tok, line: start_line, end_line: line, start, end: i, first_on_line: !line_has_token });
        line_has_token = true;
    }
    out
}

/// End of an m4 macro call `name(…)` starting its argument list at `open`, when `name` is an
/// m4 built-in and the arguments use m4 quotes; parentheses inside `` `…' `` do not count.
fn m4_call_end(src: &str, name: &str, open: usize) -> Option<usize> {
    let b = src.as_bytes();
    if !M4_MACROS.contains(&name) || b.get(open) != Some(&b'(') {
        return None;
    }
    let mut depth = 0usize;
    let mut quote = 0usize;
    let mut quoted = false;
    for (k, &c) in b.iter().enumerate().skip(open) {
        match c {
            b'`' => {
                quote += 1;
                quoted = true;
            }
            b'\'' if quote > 0 => quote -= 1,
            b'(' if quote == 0 => depth += 1,
            b')' if quote == 0 => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return quoted.then_some(k + 1);
                }
            }
            _ => {}
        }
    }
    None
}

pub(super) fn number(text: &str) -> Option<i64> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return i64::from_str_radix(hex, 16).ok();
    }
    text.parse().ok()
}

/// A quoted string starting at `i`: (decoded text, index after it).
fn string_at(src: &str, i: usize) -> (String, usize) {
    let quote = src.as_bytes()[i] as char;
    let mut out = String::new();
    let mut chars = src[i + 1..].char_indices();
    while let Some((k, ch)) = chars.next() {
        match ch {
            c if c == quote => return (out, i + 1 + k + 1),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, 't')) => out.push('\t'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, c)) if c == quote => out.push(c),
                Some((_, c)) => {
                    out.push('\\');
                    out.push(c);
                }
                None => out.push('\\'),
            },
            // An unclosed quote ends with its line, so a stray m4 quote cannot swallow the file.
            '\n' => return (out, i + 1 + k),
            c => out.push(c),
        }
    }
    (out, src.len())
}

/// End of a pseudo-variable starting at `i` (`$`): a name, then an optional balanced
/// `(…)` and `[…]`; `$(…)` is one balanced group; `$?` stands alone.
pub(super) fn pv_end(b: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    if b.get(j) == Some(&b'?') {
        return j + 1;
    }
    if b.get(j) == Some(&b'(') || b.get(j) == Some(&b'{') {
        return balanced(b, j);
    }
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
        j += 1;
    }
    if b.get(j) == Some(&b'(') {
        j = balanced(b, j);
    }
    if b.get(j) == Some(&b'[') {
        j = balanced(b, j);
    }
    j
}

/// Index after the bracket group opening at `j`, nested groups and quotes included.
fn balanced(b: &[u8], j: usize) -> usize {
    let mut depth = 0usize;
    let mut k = j;
    let mut quote: Option<u8> = None;
    while k < b.len() {
        let c = b[k];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) if c == b'\\' => k += 1,
            Some(_) => {}
            None => match c {
                b'"' | b'\'' => quote = Some(c),
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return k + 1;
                    }
                }
                b'\n' => return k,
                _ => {}
            },
        }
        k += 1;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s).into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn comments_of_three_kinds_are_tokens() {
        let t = tokenize("a # one\n// two\n/* three\nlines */ b");
        let kinds: Vec<_> = t.iter().map(|t| t.tok.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                Tok::Ident("a".into()),
                Tok::Comment(" one".into()),
                Tok::Comment(" two".into()),
                Tok::Comment(" three\nlines ".into()),
                Tok::Ident("b".into())
            ]
        );
        assert_eq!((t[3].line, t[3].end_line, t[4].line), (3, 4, 4));
        assert!(!t[1].first_on_line && t[2].first_on_line);
    }

    #[test]
    fn strings_keep_unknown_escapes_for_regexes() {
        assert_eq!(toks(r#""a\"b\n" '192\.168'"#), vec![Tok::Str("a\"b\n".into()), Tok::Str(r"192\.168".into())]);
    }

    #[test]
    fn pseudo_variables_numbers_addresses_and_operators() {
        assert_eq!(
            toks("$avp(x) := $(ru{s.len}) + $? ; $si==10.0.1.100 0x10 !~"),
            vec![
                Tok::Pv("$avp(x)".into()),
                Tok::Op(":="),
                Tok::Pv("$(ru{s.len})".into()),
                Tok::Op("+"),
                Tok::Pv("$?".into()),
                Tok::Op(";"),
                Tok::Pv("$si".into()),
                Tok::Op("=="),
                Tok::Addr("10.0.1.100".into()),
                Tok::Int(16),
                Tok::Op("!~"),
            ]
        );
        assert_eq!(
            toks("`x' 'y'"),
            vec![Tok::Stray('`'), Tok::Ident("x".into()), Tok::Stray('\''), Tok::Str("y".into())]
        );
    }

    #[test]
    fn an_m4_macro_call_is_one_token_over_its_lines() {
        let t = tokenize("a\nifelse(X,`yes',`loadmodule \"x.so\"\nf(1)',`') b\nifdef(y)");
        assert_eq!(t[1].tok, Tok::M4("ifelse(X,`yes',`loadmodule \"x.so\"\nf(1)',`')".into()));
        assert_eq!((t[1].line, t[1].end_line, t[2].line), (2, 3, 3));
        assert_eq!(t[2].tok, Tok::Ident("b".into()));
        // Without m4 quotes it is an ordinary call.
        assert_eq!(t[3].tok, Tok::Ident("ifdef".into()));
    }
}
