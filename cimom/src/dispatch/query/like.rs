//! WQL LIKE patterns.

/// One element of a LIKE pattern.
#[derive(Debug, PartialEq)]
enum PatternToken {
    /// `%`: any run of characters.
    Any,
    /// `_`: one character.
    One,
    /// `[...]`: one character in (or, negated, not in) the set of chars and ranges.
    Set {
        items: Vec<(char, char)>,
        negated: bool,
    },
    /// A literal character.
    Literal(char),
}

impl PatternToken {
    fn matches(&self, c: char) -> bool {
        match self {
            PatternToken::Any => false,
            PatternToken::One => true,
            PatternToken::Set { items, negated } => {
                items.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negated
            }
            PatternToken::Literal(l) => *l == c,
        }
    }
}

fn pattern_tokens(pattern: &str) -> Vec<PatternToken> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '%' => out.push(PatternToken::Any),
            '_' => out.push(PatternToken::One),
            '[' => match chars[i + 1..].iter().position(|&c| c == ']') {
                Some(len) => {
                    let mut set = &chars[i + 1..i + 1 + len];
                    let negated = set.first() == Some(&'^');
                    if negated {
                        set = &set[1..];
                    }
                    let mut items = Vec::new();
                    let mut k = 0;
                    while k < set.len() {
                        if k + 2 < set.len() && set[k + 1] == '-' {
                            items.push((set[k], set[k + 2]));
                            k += 3;
                        } else {
                            items.push((set[k], set[k]));
                            k += 1;
                        }
                    }
                    out.push(PatternToken::Set { items, negated });
                    i += len + 1;
                }
                None => out.push(PatternToken::Literal('[')),
            },
            c => out.push(PatternToken::Literal(c)),
        }
        i += 1;
    }
    out
}

/// WQL LIKE: `%` any run, `_` one character, `[abc]`, `[a-z]`, `[^x]` sets. Matching
/// backtracks only to the last `%`, so it takes at most length × pattern steps whatever
/// the pattern (a naive recursive matcher is exponential in the number of `%`).
pub fn like(s: &str, pattern: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    let p = pattern_tokens(pattern);
    let (mut si, mut pi) = (0, 0);
    let mut last_any: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == PatternToken::Any {
            last_any = Some((pi + 1, si));
            pi += 1;
        } else if pi < p.len() && p[pi].matches(s[si]) {
            si += 1;
            pi += 1;
        } else if let Some((after, start)) = last_any {
            // Let the last % take one more character and retry from there.
            last_any = Some((after, start + 1));
            pi = after;
            si = start + 1;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|t| *t == PatternToken::Any)
}
