//! A parser for the subset of SOQL a sync client needs:
//! `SELECT f1, f2 FROM Obj [WHERE cond] [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...] [LIMIT n] [OFFSET n]`
//! where `cond` combines comparisons (`= != <> < <= > >= LIKE IN NOT IN`) with `AND`, `OR`,
//! `NOT` and parentheses. Literals are strings, numbers, booleans, `null`, dates and datetimes,
//! as in Salesforce's SOQL reference. Field names are left unresolved (the caller checks them
//! against the object's describe, case-insensitively, as Salesforce does).

use std::fmt;

/// A parsed SOQL statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Selected fields, in the order written, with their column in the query text.
    pub fields: Vec<Located<String>>,
    /// The object named in `FROM`.
    pub object: Located<String>,
    pub condition: Option<Condition>,
    pub order_by: Vec<OrderBy>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

/// A value with the 1-based column where it starts in the query text (for Salesforce-style
/// error messages, which point at the offending token).
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub field: Located<String>,
    pub descending: bool,
    pub nulls_last: bool,
}

/// A boolean condition of a `WHERE` clause.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    Compare {
        field: Located<String>,
        op: CompareOp,
        value: Literal,
    },
    In {
        field: Located<String>,
        values: Vec<Literal>,
        negated: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
}

/// A literal value in a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    /// `YYYY-MM-DD`
    Date(String),
    /// A datetime literal, as milliseconds since the Unix epoch.
    DateTime(i64),
}

/// Why a query could not be parsed; rendered as Salesforce's `MALFORMED_QUERY` message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    /// A run starting with a digit: number, date or datetime.
    Numeric(String),
    Symbol(&'static str),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Word(w) | Token::Numeric(w) => f.write_str(w),
            Token::Str(s) => write!(f, "'{s}'"),
            Token::Symbol(s) => f.write_str(s),
        }
    }
}

fn tokenize(text: &str) -> Result<Vec<Located<Token>>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let token = if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '.'))
            {
                i += 1;
            }
            Token::Word(chars[start..i].iter().collect())
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], ':' | '.' | '+' | '-'))
            {
                i += 1;
            }
            Token::Numeric(chars[start..i].iter().collect())
        } else if c == '\'' {
            i += 1;
            let mut value = String::new();
            loop {
                match chars.get(i) {
                    None => {
                        return Err(ParseError {
                            message: "unexpected end of query: unterminated string literal".into(),
                            column,
                        });
                    }
                    Some('\\') => {
                        let escaped = chars.get(i + 1).copied().unwrap_or('\\');
                        value.push(match escaped {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            other => other,
                        });
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        value.push(other);
                        i += 1;
                    }
                }
            }
            Token::Str(value)
        } else {
            let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let symbol = match two.as_str() {
                "!=" => Some("!="),
                "<>" => Some("<>"),
                "<=" => Some("<="),
                ">=" => Some(">="),
                _ => None,
            };
            if let Some(symbol) = symbol {
                i += 2;
                Token::Symbol(symbol)
            } else {
                i += 1;
                Token::Symbol(match c {
                    ',' => ",",
                    '(' => "(",
                    ')' => ")",
                    '=' => "=",
                    '<' => "<",
                    '>' => ">",
                    _ => {
                        return Err(ParseError {
                            message: format!("unexpected token: '{c}'"),
                            column,
                        });
                    }
                })
            }
        };
        tokens.push(Located {
            value: token,
            column,
        });
    }
    Ok(tokens)
}

/// Parses a SOQL statement.
pub fn parse(text: &str) -> Result<Query, ParseError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        position: 0,
        end_column: text.chars().count() + 1,
    };
    let query = parser.query()?;
    if let Some(token) = parser.peek() {
        return Err(parser.unexpected(token));
    }
    Ok(query)
}

struct Parser {
    tokens: Vec<Located<Token>>,
    position: usize,
    end_column: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Located<Token>> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Result<Located<Token>, ParseError> {
        let token = self
            .tokens
            .get(self.position)
            .cloned()
            .ok_or_else(|| ParseError {
                message: "unexpected end of query".into(),
                column: self.end_column,
            })?;
        self.position += 1;
        Ok(token)
    }

    fn unexpected(&self, token: &Located<Token>) -> ParseError {
        ParseError {
            message: format!("unexpected token: '{}'", token.value),
            column: token.column,
        }
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Located { value: Token::Word(w), .. }) if w.eq_ignore_ascii_case(keyword))
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let found = self.peek_keyword(keyword);
        if found {
            self.position += 1;
        }
        found
    }

    fn expect_keyword(&mut self, keyword: &str) -> Result<(), ParseError> {
        let token = self.next()?;
        match &token.value {
            Token::Word(w) if w.eq_ignore_ascii_case(keyword) => Ok(()),
            _ => Err(ParseError {
                message: format!("unexpected token: '{}', expecting {keyword}", token.value),
                column: token.column,
            }),
        }
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        let found =
            matches!(self.peek(), Some(Located { value: Token::Symbol(s), .. }) if *s == symbol);
        if found {
            self.position += 1;
        }
        found
    }

    fn identifier(&mut self) -> Result<Located<String>, ParseError> {
        let token = self.next()?;
        match token.value {
            Token::Word(w) if !is_reserved(&w) => Ok(Located {
                value: w,
                column: token.column,
            }),
            _ => Err(self.unexpected(&token)),
        }
    }

    /// The object after `FROM`: any word, keywords included (Salesforce's `Order` object is
    /// queried as `SELECT Id FROM Order`).
    fn object_name(&mut self) -> Result<Located<String>, ParseError> {
        let token = self.next()?;
        match token.value {
            Token::Word(w) => Ok(Located {
                value: w,
                column: token.column,
            }),
            _ => Err(self.unexpected(&token)),
        }
    }

    fn unsigned(&mut self) -> Result<usize, ParseError> {
        let token = self.next()?;
        match &token.value {
            Token::Numeric(n) => n.parse().map_err(|_| self.unexpected(&token)),
            _ => Err(self.unexpected(&token)),
        }
    }

    fn query(&mut self) -> Result<Query, ParseError> {
        self.expect_keyword("SELECT")?;
        let mut fields = vec![self.identifier()?];
        while self.eat_symbol(",") {
            fields.push(self.identifier()?);
        }
        self.expect_keyword("FROM")?;
        let object = self.object_name()?;
        let condition = if self.eat_keyword("WHERE") {
            Some(self.or_condition()?)
        } else {
            None
        };
        let mut order_by = Vec::new();
        if self.eat_keyword("ORDER") {
            self.expect_keyword("BY")?;
            loop {
                let field = self.identifier()?;
                let descending = if self.eat_keyword("DESC") {
                    true
                } else {
                    self.eat_keyword("ASC");
                    false
                };
                // Salesforce puts nulls first in ascending order unless told otherwise.
                let mut nulls_last = descending;
                if self.eat_keyword("NULLS") {
                    if self.eat_keyword("LAST") {
                        nulls_last = true;
                    } else {
                        self.expect_keyword("FIRST")?;
                        nulls_last = false;
                    }
                }
                order_by.push(OrderBy {
                    field,
                    descending,
                    nulls_last,
                });
                if !self.eat_symbol(",") {
                    break;
                }
            }
        }
        let limit = if self.eat_keyword("LIMIT") {
            Some(self.unsigned()?)
        } else {
            None
        };
        let offset = if self.eat_keyword("OFFSET") {
            Some(self.unsigned()?)
        } else {
            None
        };
        Ok(Query {
            fields,
            object,
            condition,
            order_by,
            limit,
            offset,
        })
    }

    fn or_condition(&mut self) -> Result<Condition, ParseError> {
        let mut terms = vec![self.and_condition()?];
        while self.eat_keyword("OR") {
            terms.push(self.and_condition()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Condition::Or(terms)
        })
    }

    fn and_condition(&mut self) -> Result<Condition, ParseError> {
        let mut terms = vec![self.unary_condition()?];
        while self.eat_keyword("AND") {
            terms.push(self.unary_condition()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Condition::And(terms)
        })
    }

    fn unary_condition(&mut self) -> Result<Condition, ParseError> {
        if self.eat_keyword("NOT") {
            return Ok(Condition::Not(Box::new(self.unary_condition()?)));
        }
        if self.eat_symbol("(") {
            let inner = self.or_condition()?;
            if !self.eat_symbol(")") {
                let token = self.next()?;
                return Err(self.unexpected(&token));
            }
            return Ok(inner);
        }
        let field = self.identifier()?;
        if self.eat_keyword("IN") {
            return Ok(Condition::In {
                field,
                values: self.literal_list()?,
                negated: false,
            });
        }
        if self.eat_keyword("NOT") {
            self.expect_keyword("IN")?;
            return Ok(Condition::In {
                field,
                values: self.literal_list()?,
                negated: true,
            });
        }
        let token = self.next()?;
        let op = match &token.value {
            Token::Symbol("=") => CompareOp::Eq,
            Token::Symbol("!=" | "<>") => CompareOp::Ne,
            Token::Symbol("<") => CompareOp::Lt,
            Token::Symbol("<=") => CompareOp::Le,
            Token::Symbol(">") => CompareOp::Gt,
            Token::Symbol(">=") => CompareOp::Ge,
            Token::Word(w) if w.eq_ignore_ascii_case("LIKE") => CompareOp::Like,
            _ => return Err(self.unexpected(&token)),
        };
        let value = self.literal()?;
        Ok(Condition::Compare { field, op, value })
    }

    fn literal_list(&mut self) -> Result<Vec<Literal>, ParseError> {
        if !self.eat_symbol("(") {
            let token = self.next()?;
            return Err(self.unexpected(&token));
        }
        let mut values = vec![self.literal()?];
        while self.eat_symbol(",") {
            values.push(self.literal()?);
        }
        if !self.eat_symbol(")") {
            let token = self.next()?;
            return Err(self.unexpected(&token));
        }
        Ok(values)
    }

    fn literal(&mut self) -> Result<Literal, ParseError> {
        let token = self.next()?;
        match &token.value {
            Token::Str(s) => Ok(Literal::String(s.clone())),
            Token::Word(w) if w.eq_ignore_ascii_case("null") => Ok(Literal::Null),
            Token::Word(w) if w.eq_ignore_ascii_case("true") => Ok(Literal::Bool(true)),
            Token::Word(w) if w.eq_ignore_ascii_case("false") => Ok(Literal::Bool(false)),
            Token::Numeric(n) => {
                if let Some(millis) = parse_datetime_literal(n) {
                    Ok(Literal::DateTime(millis))
                } else if chrono::NaiveDate::parse_from_str(n, "%Y-%m-%d").is_ok() {
                    Ok(Literal::Date(n.clone()))
                } else if let Ok(number) = n.parse::<f64>() {
                    Ok(Literal::Number(number))
                } else {
                    Err(ParseError {
                        message: format!(
                            "line 1:{} no viable alternative at character '{n}'",
                            token.column
                        ),
                        column: token.column,
                    })
                }
            }
            _ => Err(self.unexpected(&token)),
        }
    }
}

fn is_reserved(word: &str) -> bool {
    const RESERVED: &[&str] = &[
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "ORDER", "BY", "LIMIT", "OFFSET", "IN",
        "LIKE", "NULL", "TRUE", "FALSE", "ASC", "DESC", "NULLS",
    ];
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

/// Parses a SOQL datetime literal (`2024-01-01T00:00:00Z`, `...00.000Z`, `...00+01:00`,
/// `...00.000+0000`) to epoch milliseconds.
pub fn parse_datetime_literal(text: &str) -> Option<i64> {
    if !text.contains('T') {
        return None;
    }
    ["%Y-%m-%dT%H:%M:%S%.fZ", "%Y-%m-%dT%H:%M:%SZ"]
        .iter()
        .find_map(|format| chrono::NaiveDateTime::parse_from_str(text, format).ok())
        .map(|naive| naive.and_utc().timestamp_millis())
        .or_else(|| {
            ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f%:z"]
                .iter()
                .find_map(|format| chrono::DateTime::parse_from_str(text, format).ok())
                .map(|dt| dt.timestamp_millis())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_incremental_sync_query() {
        let query = parse(
            "SELECT Id, Name, SystemModstamp FROM Account WHERE SystemModstamp > 2024-01-01T00:00:00.000Z \
             AND IsDeleted = false ORDER BY SystemModstamp ASC, Id ASC LIMIT 500",
        )
        .unwrap();
        assert_eq!(query.fields.len(), 3);
        assert_eq!(query.object.value, "Account");
        assert_eq!(query.limit, Some(500));
        assert_eq!(query.order_by.len(), 2);
        let Some(Condition::And(terms)) = query.condition else {
            panic!("expected AND")
        };
        assert_eq!(
            terms[0],
            Condition::Compare {
                field: Located {
                    value: "SystemModstamp".into(),
                    column: 52
                },
                op: CompareOp::Gt,
                value: Literal::DateTime(1_704_067_200_000),
            }
        );
    }

    #[test]
    fn parses_keyset_or_with_parentheses() {
        let query = parse(
            "select Id from Contact where SystemModstamp > 2024-01-01T00:00:00Z or \
             (SystemModstamp = 2024-01-01T00:00:00+00:00 and Id > '003000000000001AAA')",
        )
        .unwrap();
        let Some(Condition::Or(terms)) = query.condition else {
            panic!("expected OR")
        };
        assert!(matches!(terms[1], Condition::And(_)));
    }

    #[test]
    fn reports_malformed_queries_with_columns() {
        let error = parse("SELECT Id FROM").unwrap_err();
        assert_eq!(error.column, 15);
        let error = parse("SELECT Id FROM Account WHERE").unwrap_err();
        assert!(error.message.contains("unexpected end"), "{error}");
        let error = parse("SELECT Id FROM Account LIMIT x").unwrap_err();
        assert_eq!(error.message, "unexpected token: 'x'");
        assert!(parse("SELECT , FROM Account").is_err());
        assert!(parse("SELECT Id FROM Account WHERE Name = 'x").is_err());
    }

    #[test]
    fn an_object_named_like_a_keyword_follows_from() {
        let q = parse("SELECT Id FROM Order ORDER BY Id ASC").unwrap();
        assert_eq!(q.object.value, "Order");
        assert_eq!(q.order_by.len(), 1);
    }

    #[test]
    fn parses_literals() {
        let query = parse("SELECT Id FROM Lead WHERE Name IN ('a\\'b', 'c') AND Amount >= -1.5 AND CloseDate < 2024-02-03")
            .unwrap();
        let Some(Condition::And(terms)) = query.condition else {
            panic!("expected AND")
        };
        assert!(
            matches!(&terms[0], Condition::In { values, .. } if values[0] == Literal::String("a'b".into()))
        );
        assert!(
            matches!(&terms[1], Condition::Compare { value: Literal::Number(n), .. } if *n == -1.5)
        );
        assert!(
            matches!(&terms[2], Condition::Compare { value: Literal::Date(d), .. } if d == "2024-02-03")
        );
    }
}
