//! What a client sees when write-through refuses a statement: one error type
//! carrying the contract's fields (`[<Api>]: message`, SQLSTATE, DETAIL,
//! schema/table/column), turned into a Postgres ErrorResponse; and why a
//! step of the pipeline stopped ([`Stop`]).

use sequin_proxy::InjectError;
use sequin_proxy::codec::ErrorResponse;
use sequin_proxy::codec::error_response::field;
use sequin_spec::record::Violation;

use crate::api::ApiError;

/// A refused write, as the client will see it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WriteError {
    pub sqlstate: String,
    /// Starts with `[<Api>]: `.
    pub message: String,
    /// The optional fields, boxed to keep `Result<_, WriteError>` small.
    pub fields: Box<Fields>,
}

/// The optional fields of a [`WriteError`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub schema: Option<String>,
    pub table: Option<String>,
    pub column: Option<String>,
}

impl WriteError {
    /// An error about `schema.table`, with the API's display name prefixed.
    pub fn new(api: &str, sqlstate: &str, message: impl AsRef<str>) -> WriteError {
        WriteError {
            sqlstate: sqlstate.to_string(),
            message: format!("[{api}]: {}", message.as_ref()),
            fields: Box::default(),
        }
    }

    pub fn on(mut self, schema: &str, table: &str) -> WriteError {
        self.fields.schema = Some(schema.to_string());
        self.fields.table = Some(table.to_string());
        self
    }

    pub fn column(mut self, column: impl Into<String>) -> WriteError {
        self.fields.column = Some(column.into());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> WriteError {
        let d = detail.into();
        if !d.is_empty() {
            self.fields.detail = Some(d);
        }
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> WriteError {
        self.fields.hint = Some(hint.into());
        self
    }

    /// A local validation failure from the spec (before any API call).
    pub fn violation(api: &str, v: &Violation) -> WriteError {
        WriteError::new(api, v.kind.sqlstate(), &v.message)
            .column(v.column.clone())
            .detail("checked locally against the connector spec; nothing was sent to the API")
    }

    /// An API's rejection. `column` is the column of the API's field, when
    /// the field is one.
    pub fn api(e: &ApiError, column: Option<&str>) -> WriteError {
        let mut message = e.message.clone();
        if let Some(c) = column {
            message.push_str(&format!(" (column `{c}`)"));
        }
        let mut w = WriteError::new(&e.api, &e.sqlstate, message).detail(e.detail());
        if let Some(c) = column {
            w = w.column(c);
        }
        w
    }

    /// The ErrorResponse sent to the client.
    pub fn to_response(&self) -> ErrorResponse {
        let mut r = ErrorResponse::new("ERROR", &self.sqlstate, self.message.clone());
        for (code, value) in [
            (field::DETAIL, &self.fields.detail),
            (field::HINT, &self.fields.hint),
            (field::SCHEMA, &self.fields.schema),
            (field::TABLE, &self.fields.table),
            (field::COLUMN, &self.fields.column),
        ] {
            if let Some(v) = value {
                r = r.with(code, v.clone());
            }
        }
        r
    }
}

/// Why a statement's write-through stopped before its answer: what every
/// step of the pipeline returns as its error.
#[derive(Debug)]
pub enum Stop {
    /// Refused by write-through: raised in the client's transaction, and
    /// sent as the error contract's ErrorResponse.
    Refuse(WriteError),
    /// The server refused (the client's statement, or one of Sequin's):
    /// the transaction is aborted by it already; the client gets it.
    Failed(ErrorResponse),
    /// The session's server connection is unusable.
    Inject(InjectError),
}

impl From<WriteError> for Stop {
    fn from(e: WriteError) -> Stop {
        Stop::Refuse(e)
    }
}

impl From<InjectError> for Stop {
    fn from(e: InjectError) -> Stop {
        match e {
            InjectError::Server(e) => Stop::Failed(without_parameters(e)),
            other => Stop::Inject(other),
        }
    }
}

/// The error of one of Sequin's own statements, for the client: without
/// the CONTEXT line that lists the statement's parameters (which a client
/// that sets `log_parameter_max_length_on_error` would otherwise get).
/// None of them is secret; they are just not the client's business.
pub fn without_parameters(mut e: ErrorResponse) -> ErrorResponse {
    for (code, value) in &mut e.fields {
        if *code == field::WHERE {
            *value = value
                .lines()
                .filter(|l| !l.contains(" with parameters: "))
                .collect::<Vec<_>>()
                .join("\n");
        }
    }
    e.fields
        .retain(|(code, value)| *code != field::WHERE || !value.is_empty());
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_carries_the_contract_fields() {
        let e = WriteError::new("Salesforce", "22023", "`email` is invalid")
            .on("salesforce", "contact")
            .column("email")
            .detail("API error code: INVALID_EMAIL_ADDRESS");
        let r = e.to_response();
        assert_eq!(r.code(), Some("22023"));
        assert_eq!(r.message(), Some("[Salesforce]: `email` is invalid"));
        assert_eq!(r.get(field::SCHEMA), Some("salesforce"));
        assert_eq!(r.get(field::TABLE), Some("contact"));
        assert_eq!(r.get(field::COLUMN), Some("email"));
        assert_eq!(
            r.get(field::DETAIL),
            Some("API error code: INVALID_EMAIL_ADDRESS")
        );
        assert_eq!(r.get(field::HINT), None);
    }
}
