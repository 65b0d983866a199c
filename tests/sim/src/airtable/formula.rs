//! The subset of Airtable's formula language that `filterByFormula` needs for syncing and simple
//! filters: literals, `{Field}` references, comparison operators (`= != < > <= >=`), `&`
//! concatenation, `+ - * /`, and the functions `AND OR NOT IF IS_AFTER IS_BEFORE IS_SAME
//! LAST_MODIFIED_TIME CREATED_TIME RECORD_ID DATETIME_PARSE BLANK TRUE FALSE LOWER UPPER LEN FIND`.
//! A record is kept when the formula evaluates to a truthy value, as in Airtable.

use std::cmp::Ordering;

/// A parsed formula.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    Text(String),
    Field(String),
    Call(String, Vec<Expr>),
    Binary(Box<Expr>, BinaryOp, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Concat,
    Add,
    Sub,
    Mul,
    Div,
}

/// A formula value.
#[derive(Debug, Clone, PartialEq)]
pub enum FormulaValue {
    Blank,
    Number(f64),
    Text(String),
    Bool(bool),
    /// Epoch milliseconds.
    DateTime(i64),
}

/// What evaluation needs from a record.
pub trait RecordView {
    /// The value of a field named in `{braces}`; `None` if no such field exists.
    fn field(&self, name: &str) -> Option<FormulaValue>;
    fn record_id(&self) -> &str;
    fn created_time(&self) -> i64;
    fn last_modified_time(&self) -> i64;
}

const FUNCTIONS: &[&str] = &[
    "AND",
    "OR",
    "NOT",
    "IF",
    "IS_AFTER",
    "IS_BEFORE",
    "IS_SAME",
    "LAST_MODIFIED_TIME",
    "CREATED_TIME",
    "RECORD_ID",
    "DATETIME_PARSE",
    "BLANK",
    "TRUE",
    "FALSE",
    "LOWER",
    "UPPER",
    "LEN",
    "FIND",
];

/// Parses a formula; the error says what is wrong (Airtable answers `INVALID_FILTER_BY_FORMULA`).
pub fn parse(text: &str) -> Result<Expr, String> {
    let mut parser = Parser {
        chars: text.chars().collect(),
        position: 0,
    };
    let expr = parser.comparison()?;
    parser.skip_whitespace();
    if parser.position < parser.chars.len() {
        return Err(format!(
            "unexpected character at position {}",
            parser.position + 1
        ));
    }
    Ok(expr)
}

/// Field names a formula references, to check them against the table.
pub fn referenced_fields(expr: &Expr, out: &mut Vec<String>) {
    match expr {
        Expr::Field(name) => out.push(name.clone()),
        Expr::Call(_, args) => args.iter().for_each(|a| referenced_fields(a, out)),
        Expr::Binary(left, _, right) => {
            referenced_fields(left, out);
            referenced_fields(right, out);
        }
        Expr::Number(_) | Expr::Text(_) => {}
    }
}

struct Parser {
    chars: Vec<char>,
    position: usize,
}

impl Parser {
    fn skip_whitespace(&mut self) {
        while self
            .chars
            .get(self.position)
            .is_some_and(|c| c.is_whitespace())
        {
            self.position += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_whitespace();
        self.chars.get(self.position).copied()
    }

    fn eat(&mut self, text: &str) -> bool {
        self.skip_whitespace();
        let matches = text
            .chars()
            .enumerate()
            .all(|(i, c)| self.chars.get(self.position + i) == Some(&c));
        if matches {
            self.position += text.chars().count();
        }
        matches
    }

    fn comparison(&mut self) -> Result<Expr, String> {
        let left = self.additive()?;
        let op = if self.eat("!=") {
            BinaryOp::Ne
        } else if self.eat("<=") {
            BinaryOp::Le
        } else if self.eat(">=") {
            BinaryOp::Ge
        } else if self.eat("=") {
            BinaryOp::Eq
        } else if self.eat("<") {
            BinaryOp::Lt
        } else if self.eat(">") {
            BinaryOp::Gt
        } else {
            return Ok(left);
        };
        let right = self.additive()?;
        Ok(Expr::Binary(Box::new(left), op, Box::new(right)))
    }

    fn additive(&mut self) -> Result<Expr, String> {
        let mut left = self.multiplicative()?;
        loop {
            let op = if self.eat("&") {
                BinaryOp::Concat
            } else if self.eat("+") {
                BinaryOp::Add
            } else if self.eat("-") {
                BinaryOp::Sub
            } else {
                return Ok(left);
            };
            let right = self.multiplicative()?;
            left = Expr::Binary(Box::new(left), op, Box::new(right));
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, String> {
        let mut left = self.primary()?;
        loop {
            let op = if self.eat("*") {
                BinaryOp::Mul
            } else if self.eat("/") {
                BinaryOp::Div
            } else {
                return Ok(left);
            };
            let right = self.primary()?;
            left = Expr::Binary(Box::new(left), op, Box::new(right));
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        match self.peek() {
            None => Err("unexpected end of formula".to_owned()),
            Some('(') => {
                self.position += 1;
                let inner = self.comparison()?;
                if !self.eat(")") {
                    return Err("missing closing parenthesis".to_owned());
                }
                Ok(inner)
            }
            Some('{') => {
                self.position += 1;
                let start = self.position;
                while self.chars.get(self.position).is_some_and(|c| *c != '}') {
                    self.position += 1;
                }
                if self.position >= self.chars.len() {
                    return Err("missing closing brace".to_owned());
                }
                let name: String = self.chars[start..self.position].iter().collect();
                self.position += 1;
                Ok(Expr::Field(name))
            }
            Some(quote @ ('\'' | '"')) => {
                self.position += 1;
                let mut text = String::new();
                loop {
                    match self.chars.get(self.position) {
                        None => return Err("unterminated string".to_owned()),
                        Some('\\') => {
                            if let Some(c) = self.chars.get(self.position + 1) {
                                text.push(*c);
                            }
                            self.position += 2;
                        }
                        Some(c) if *c == quote => {
                            self.position += 1;
                            break;
                        }
                        Some(c) => {
                            text.push(*c);
                            self.position += 1;
                        }
                    }
                }
                Ok(Expr::Text(text))
            }
            Some(c) if c.is_ascii_digit() || c == '.' || c == '-' => {
                let start = self.position;
                self.position += 1;
                while self
                    .chars
                    .get(self.position)
                    .is_some_and(|c| c.is_ascii_digit() || *c == '.')
                {
                    self.position += 1;
                }
                let text: String = self.chars[start..self.position].iter().collect();
                text.parse::<f64>()
                    .map(Expr::Number)
                    .map_err(|_| format!("invalid number {text}"))
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let start = self.position;
                while self
                    .chars
                    .get(self.position)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    self.position += 1;
                }
                let name: String = self.chars[start..self.position].iter().collect();
                if !self.eat("(") {
                    // A bare word is a field name without braces, as Airtable allows.
                    return Ok(Expr::Field(name));
                }
                let upper = name.to_ascii_uppercase();
                if !FUNCTIONS.contains(&upper.as_str()) {
                    return Err(format!("unknown function {name}"));
                }
                let mut args = Vec::new();
                if !self.eat(")") {
                    loop {
                        args.push(self.comparison()?);
                        if self.eat(")") {
                            break;
                        }
                        if !self.eat(",") {
                            return Err(format!("expected , or ) in the arguments of {name}"));
                        }
                    }
                }
                Ok(Expr::Call(upper, args))
            }
            Some(c) => Err(format!("unexpected character {c}")),
        }
    }
}

/// Parses the date/time forms a formula compares against: ISO-8601 with or without time or
/// offset, or `YYYY-MM-DD`.
pub fn parse_datetime(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(dt.timestamp_millis());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(naive.and_utc().timestamp_millis());
        }
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_millis())
}

impl FormulaValue {
    pub fn truthy(&self) -> bool {
        match self {
            FormulaValue::Blank => false,
            FormulaValue::Number(n) => *n != 0.0,
            FormulaValue::Text(s) => !s.is_empty(),
            FormulaValue::Bool(b) => *b,
            FormulaValue::DateTime(_) => true,
        }
    }

    fn as_text(&self) -> String {
        match self {
            FormulaValue::Blank => String::new(),
            FormulaValue::Number(n) => n.to_string(),
            FormulaValue::Text(s) => s.clone(),
            FormulaValue::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
            FormulaValue::DateTime(m) => chrono::DateTime::from_timestamp_millis(*m)
                .unwrap_or_default()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string(),
        }
    }

    fn as_number(&self) -> Option<f64> {
        match self {
            FormulaValue::Blank => Some(0.0),
            FormulaValue::Number(n) => Some(*n),
            FormulaValue::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            FormulaValue::Text(s) => s.trim().parse().ok(),
            FormulaValue::DateTime(m) => Some(*m as f64),
        }
    }

    fn as_datetime(&self) -> Option<i64> {
        match self {
            FormulaValue::DateTime(m) => Some(*m),
            FormulaValue::Text(s) => parse_datetime(s),
            _ => None,
        }
    }

    fn is_blank(&self) -> bool {
        matches!(self, FormulaValue::Blank) || matches!(self, FormulaValue::Text(s) if s.is_empty())
    }
}

/// Compares two values the way Airtable coerces them: dates with dates (text parsed as a
/// date), numbers with numbers, otherwise as text.
fn compare(left: &FormulaValue, right: &FormulaValue) -> Option<Ordering> {
    use FormulaValue as V;
    match (left, right) {
        (V::DateTime(_), _) | (_, V::DateTime(_)) => {
            if left.is_blank() || right.is_blank() {
                return None;
            }
            Some(left.as_datetime()?.cmp(&right.as_datetime()?))
        }
        (V::Number(_) | V::Bool(_), _) | (_, V::Number(_) | V::Bool(_)) => {
            left.as_number()?.partial_cmp(&right.as_number()?)
        }
        _ => Some(left.as_text().cmp(&right.as_text())),
    }
}

/// Evaluates a formula against a record. Errors (e.g. an unparseable date) evaluate to blank,
/// which excludes the record, as Airtable's `#ERROR!` does.
pub fn eval(expr: &Expr, record: &dyn RecordView) -> FormulaValue {
    use FormulaValue as V;
    match expr {
        Expr::Number(n) => V::Number(*n),
        Expr::Text(s) => V::Text(s.clone()),
        Expr::Field(name) => record.field(name).unwrap_or(V::Blank),
        Expr::Binary(left, op, right) => {
            let (l, r) = (eval(left, record), eval(right, record));
            match op {
                BinaryOp::Eq => V::Bool(if l.is_blank() || r.is_blank() {
                    l.is_blank() && r.is_blank()
                } else {
                    compare(&l, &r) == Some(Ordering::Equal)
                }),
                BinaryOp::Ne => V::Bool(if l.is_blank() || r.is_blank() {
                    l.is_blank() != r.is_blank()
                } else {
                    compare(&l, &r) != Some(Ordering::Equal)
                }),
                BinaryOp::Lt => V::Bool(compare(&l, &r) == Some(Ordering::Less)),
                BinaryOp::Le => V::Bool(matches!(
                    compare(&l, &r),
                    Some(Ordering::Less | Ordering::Equal)
                )),
                BinaryOp::Gt => V::Bool(compare(&l, &r) == Some(Ordering::Greater)),
                BinaryOp::Ge => V::Bool(matches!(
                    compare(&l, &r),
                    Some(Ordering::Greater | Ordering::Equal)
                )),
                BinaryOp::Concat => V::Text(l.as_text() + &r.as_text()),
                BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div => {
                    match (l.as_number(), r.as_number()) {
                        (Some(a), Some(b)) => V::Number(match op {
                            BinaryOp::Add => a + b,
                            BinaryOp::Sub => a - b,
                            BinaryOp::Mul => a * b,
                            _ if b == 0.0 => return V::Blank,
                            _ => a / b,
                        }),
                        _ => V::Blank,
                    }
                }
            }
        }
        Expr::Call(name, args) => {
            let arg = |i: usize| args.get(i).map_or(V::Blank, |a| eval(a, record));
            match name.as_str() {
                "AND" => V::Bool(!args.is_empty() && args.iter().all(|a| eval(a, record).truthy())),
                "OR" => V::Bool(args.iter().any(|a| eval(a, record).truthy())),
                "NOT" => V::Bool(!arg(0).truthy()),
                "IF" => {
                    if arg(0).truthy() {
                        arg(1)
                    } else {
                        arg(2)
                    }
                }
                "IS_AFTER" | "IS_BEFORE" | "IS_SAME" => {
                    match (arg(0).as_datetime(), arg(1).as_datetime()) {
                        (Some(a), Some(b)) => V::Bool(match name.as_str() {
                            "IS_AFTER" => a > b,
                            "IS_BEFORE" => a < b,
                            _ => a == b,
                        }),
                        _ => V::Blank,
                    }
                }
                "LAST_MODIFIED_TIME" => V::DateTime(record.last_modified_time()),
                "CREATED_TIME" => V::DateTime(record.created_time()),
                "RECORD_ID" => V::Text(record.record_id().to_owned()),
                "DATETIME_PARSE" => arg(0).as_datetime().map_or(V::Blank, V::DateTime),
                "BLANK" => V::Blank,
                "TRUE" => V::Bool(true),
                "FALSE" => V::Bool(false),
                "LOWER" => V::Text(arg(0).as_text().to_lowercase()),
                "UPPER" => V::Text(arg(0).as_text().to_uppercase()),
                "LEN" => V::Number(arg(0).as_text().chars().count() as f64),
                "FIND" => {
                    let (needle, haystack) = (arg(0).as_text(), arg(1).as_text());
                    V::Number(
                        haystack
                            .find(&needle)
                            .map_or(0.0, |i| (haystack[..i].chars().count() + 1) as f64),
                    )
                }
                _ => V::Blank,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Row;

    impl RecordView for Row {
        fn field(&self, name: &str) -> Option<FormulaValue> {
            match name {
                "Name" => Some(FormulaValue::Text("Ada".into())),
                "Amount" => Some(FormulaValue::Number(12.0)),
                "Empty" => Some(FormulaValue::Blank),
                _ => None,
            }
        }
        fn record_id(&self) -> &str {
            "rec00000000000001"
        }
        fn created_time(&self) -> i64 {
            1_704_067_200_000
        }
        fn last_modified_time(&self) -> i64 {
            1_704_153_600_000 // 2024-01-02
        }
    }

    fn truthy(formula: &str) -> bool {
        eval(&parse(formula).unwrap(), &Row).truthy()
    }

    #[test]
    fn sync_filters() {
        assert!(truthy(
            "IS_AFTER(LAST_MODIFIED_TIME(), '2024-01-01T12:00:00.000Z')"
        ));
        assert!(!truthy("IS_AFTER(LAST_MODIFIED_TIME(), '2024-01-03')"));
        assert!(truthy("LAST_MODIFIED_TIME() > '2024-01-01T00:00:00Z'"));
        assert!(truthy(
            "LAST_MODIFIED_TIME() >= DATETIME_PARSE('2024-01-02')"
        ));
        assert!(!truthy("LAST_MODIFIED_TIME() < '2024-01-02T00:00:00.000Z'"));
    }

    #[test]
    fn fields_and_logic() {
        assert!(truthy("AND({Name} = 'Ada', {Amount} > 10)"));
        assert!(truthy("OR({Name} = \"Bob\", Amount * 2 = 24)"));
        assert!(truthy("NOT({Empty})"));
        assert!(truthy("{Empty} = BLANK()"));
        assert!(truthy("FIND('d', LOWER({Name})) = 2"));
        assert!(truthy("RECORD_ID() = 'rec00000000000001'"));
    }

    #[test]
    fn rejects_malformed_formulas() {
        assert!(parse("AND(").is_err());
        assert!(parse("{Name").is_err());
        assert!(parse("NOPE(1)").is_err());
        assert!(parse("'abc").is_err());
        let mut fields = Vec::new();
        referenced_fields(&parse("AND({A}, B = 1)").unwrap(), &mut fields);
        assert_eq!(fields, ["A", "B"]);
    }
}
