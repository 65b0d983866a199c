//! `#[derive(Record)]`: turns `#[sequin(...)]` attributes on a generated
//! struct into an impl of `sequin_spec::record::Record`.
//!
//! The macro is glue: it reads attributes into column descriptors and emits
//! a static `[Column]` plus field-by-field conversions; decoding, encoding
//! and validation live in `sequin_spec::record` and are shared with objects
//! discovered at run time. Every attribute mistake is reported at its span,
//! all of them at once.
//!
//! ```ignore
//! #[derive(sequin_derive::Record)]
//! #[sequin(table = "customer", api_name = "customer")]
//! pub struct Customer {
//!     #[sequin(primary_key, api = "id", ty = "string", access = "read_only", nullable = false)]
//!     pub id: String,
//!     #[sequin(api = "email", ty = "string", access = "writable", format = "email", max_length = 512)]
//!     pub email: Option<String>,
//! }
//! ```

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::quote;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, LitInt, LitStr, parse_macro_input};

/// Derives `sequin_spec::record::Record`; see the crate docs for attributes.
#[proc_macro_derive(Record, attributes(sequin))]
pub fn derive_record(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(|errors| errors.to_compile_error())
        .into()
}

/// Collects errors so every mistake is reported in one compile.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    fn finish(self) -> Result<(), syn::Error> {
        self.0.map_or(Ok(()), Err)
    }
}

const TYPES: &[(&str, &str)] = &[
    ("string", "String"),
    ("integer", "Integer"),
    ("float", "Float"),
    ("decimal", "Decimal"),
    ("boolean", "Boolean"),
    ("timestamp", "Timestamp"),
    ("date", "Date"),
    ("json", "Json"),
    ("string_array", "StringArray"),
];
const ACCESS: &[(&str, &str)] = &[
    ("read_only", "ReadOnly"),
    ("create_only", "CreateOnly"),
    ("update_only", "UpdateOnly"),
    ("writable", "Writable"),
];
const FORMATS: &[(&str, &str)] = &[
    ("email", "Email"),
    ("uri", "Uri"),
    ("phone", "Phone"),
    ("currency", "Currency"),
    ("country", "Country"),
];
const TIME_FORMATS: &[(&str, &str)] = &[
    ("iso8601", "Iso8601"),
    ("unix_seconds", "UnixSeconds"),
    ("unix_millis", "UnixMillis"),
];

/// Looks a string attribute value up in a table of (name, variant).
fn variant(
    lit: &LitStr,
    table: &[(&str, &'static str)],
    what: &str,
) -> Result<syn::Ident, syn::Error> {
    let v = lit.value();
    table
        .iter()
        .find(|(name, _)| *name == v)
        .map(|(_, variant)| syn::Ident::new(variant, lit.span()))
        .ok_or_else(|| {
            let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            syn::Error::new(
                lit.span(),
                format!(
                    "unknown {what} `{v}`; expected one of: {}",
                    names.join(", ")
                ),
            )
        })
}

struct FieldSpec {
    ident: syn::Ident,
    column: String,
    api: String,
    path: Option<String>,
    ty: syn::Ident,
    access: syn::Ident,
    nullable: bool,
    required_on_create: bool,
    format: Option<syn::Ident>,
    max_length: Option<u32>,
    values: Vec<String>,
    pattern: Option<String>,
    time_format: Option<syn::Ident>,
    stringly: bool,
    merge_keys: bool,
    external_id: bool,
    primary_key: bool,
}

fn parse_field(field: &syn::Field, errors: &mut Errors) -> Option<FieldSpec> {
    let ident = field.ident.clone()?;
    let mut api = None;
    let mut path = None;
    let mut ty = None;
    let mut access = None;
    let mut nullable = true;
    let mut required_on_create = false;
    let mut format = None;
    let mut max_length = None;
    let mut values = Vec::new();
    let mut pattern = None;
    let mut time_format = None;
    let mut stringly = false;
    let mut merge_keys = false;
    let mut external_id = false;
    let mut primary_key = false;
    let mut seen = false;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("sequin")) {
        seen = true;
        let res = attr.parse_nested_meta(|meta| {
            let key = meta
                .path
                .get_ident()
                .map(|i| i.to_string())
                .unwrap_or_default();
            let string = |meta: &syn::meta::ParseNestedMeta| -> syn::Result<LitStr> {
                meta.value()?.parse::<LitStr>()
            };
            match key.as_str() {
                "api" => api = Some(string(&meta)?.value()),
                "path" => path = Some(string(&meta)?.value()),
                "ty" => ty = Some(variant(&string(&meta)?, TYPES, "type")?),
                "access" => access = Some(variant(&string(&meta)?, ACCESS, "access")?),
                "format" => format = Some(variant(&string(&meta)?, FORMATS, "format")?),
                "time_format" => {
                    time_format = Some(variant(&string(&meta)?, TIME_FORMATS, "time format")?)
                }
                "nullable" => nullable = meta.value()?.parse::<syn::LitBool>()?.value,
                "required_on_create" => required_on_create = true,
                "stringly" => stringly = true,
                "merge_keys" => merge_keys = true,
                "external_id" => external_id = true,
                "primary_key" => primary_key = true,
                "max_length" => max_length = Some(meta.value()?.parse::<LitInt>()?.base10_parse()?),
                "pattern" => pattern = Some(string(&meta)?.value()),
                "values" => {
                    let content;
                    syn::parenthesized!(content in meta.input);
                    let lits = syn::punctuated::Punctuated::<LitStr, syn::Token![,]>::parse_terminated(&content)?;
                    values.extend(lits.iter().map(LitStr::value));
                }
                _ => {
                    return Err(meta.error(format!(
                        "unknown sequin field attribute `{key}`; expected one of: api, path, ty, access, \
                         nullable, required_on_create, format, max_length, values, pattern, time_format, \
                         stringly, merge_keys, external_id, primary_key"
                    )));
                }
            }
            Ok(())
        });
        if let Err(e) = res {
            errors.push(e);
        }
    }
    if !seen {
        errors.push(syn::Error::new(
            ident.span(),
            format!("field `{ident}` has no #[sequin(...)] attribute"),
        ));
        return None;
    }
    let Some(ty) = ty else {
        errors.push(syn::Error::new(
            ident.span(),
            format!("field `{ident}` needs `ty = \"...\"`"),
        ));
        return None;
    };
    let column = ident.unraw().to_string();
    Some(FieldSpec {
        api: api.unwrap_or_else(|| column.clone()),
        column,
        ident,
        path,
        ty,
        access: access.unwrap_or_else(|| syn::Ident::new("ReadOnly", Span::call_site())),
        nullable,
        required_on_create,
        format,
        max_length,
        values,
        pattern,
        time_format,
        stringly,
        merge_keys,
        external_id,
        primary_key,
    })
}

fn expand(input: &DeriveInput) -> Result<TokenStream2, syn::Error> {
    let mut errors = Errors::default();
    let name = &input.ident;
    let mut table = None;
    let mut api_name = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("sequin")) {
        let res = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("table") {
                table = Some(meta.value()?.parse::<LitStr>()?.value());
            } else if meta.path.is_ident("api_name") {
                api_name = Some(meta.value()?.parse::<LitStr>()?.value());
            } else {
                return Err(
                    meta.error("unknown sequin struct attribute; expected `table` or `api_name`")
                );
            }
            Ok(())
        });
        if let Err(e) = res {
            errors.push(e);
        }
    }
    let fields = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(f) => f.named.iter().collect::<Vec<_>>(),
            _ => {
                return Err(syn::Error::new(
                    input.span(),
                    "#[derive(Record)] needs a struct with named fields",
                ));
            }
        },
        _ => {
            return Err(syn::Error::new(
                input.span(),
                "#[derive(Record)] works on structs only",
            ));
        }
    };
    let specs: Vec<FieldSpec> = fields
        .iter()
        .filter_map(|f| parse_field(f, &mut errors))
        .collect();
    let table = table.unwrap_or_else(|| {
        errors.push(syn::Error::new(
            name.span(),
            "missing #[sequin(table = \"...\")] on the struct",
        ));
        String::new()
    });
    let api_name = api_name.unwrap_or_else(|| table.clone());
    let pks: Vec<usize> = specs
        .iter()
        .enumerate()
        .filter(|(_, s)| s.primary_key)
        .map(|(i, _)| i)
        .collect();
    if pks.len() != 1 {
        errors.push(syn::Error::new(
            name.span(),
            format!(
                "exactly one field must be marked `primary_key` (found {})",
                pks.len()
            ),
        ));
    }
    errors.finish()?;
    let pk = pks[0];

    let columns = specs.iter().map(|s| {
        let FieldSpec {
            column,
            api,
            ty,
            access,
            nullable,
            required_on_create,
            max_length,
            stringly,
            merge_keys,
            external_id,
            ..
        } = s;
        let path = s.path.clone().unwrap_or_else(|| api.clone());
        let format = opt(s.format.as_ref().map(|f| quote!(::sequin_spec::model::Format::#f)));
        let max_length = opt(max_length.map(|n| quote!(#n)));
        let pattern = opt(s.pattern.as_ref().map(|p| quote!(::std::borrow::Cow::Borrowed(#p))));
        let values = &s.values;
        let tf = s
            .time_format
            .clone()
            .unwrap_or_else(|| syn::Ident::new("Iso8601", Span::call_site()));
        quote! {
            ::sequin_spec::record::Column {
                name: ::std::borrow::Cow::Borrowed(#column),
                api_name: ::std::borrow::Cow::Borrowed(#api),
                path: ::std::borrow::Cow::Borrowed(#path),
                ty: ::sequin_spec::model::FieldType::#ty,
                nullable: #nullable,
                access: ::sequin_spec::model::Access::#access,
                required_on_create: #required_on_create,
                format: #format,
                max_length: #max_length,
                enum_values: ::std::borrow::Cow::Borrowed(&[#(::std::borrow::Cow::Borrowed(#values)),*]),
                pattern: #pattern,
                time_format: ::sequin_spec::model::TimeFormat::#tf,
                stringly: #stringly,
                merge_keys: #merge_keys,
                external_id: #external_id,
            }
        }
    });
    let n = specs.len();
    let idents: Vec<&syn::Ident> = specs.iter().map(|s| &s.ident).collect();
    let indexes = 0..n;
    let to_cells = idents
        .iter()
        .map(|i| quote!(::sequin_spec::record::FromCell::to_cell(&self.#i)));
    Ok(quote! {
        impl ::sequin_spec::record::Record for #name {
            const TABLE: &'static str = #table;
            const API_NAME: &'static str = #api_name;
            const PRIMARY_KEY: usize = #pk;

            fn columns() -> &'static [::sequin_spec::record::Column] {
                static COLUMNS: [::sequin_spec::record::Column; #n] = [#(#columns),*];
                &COLUMNS
            }

            fn decode(record: &::serde_json::Value) -> ::std::result::Result<Self, ::sequin_spec::record::DecodeError> {
                Self::from_row(::sequin_spec::record::decode_row(Self::columns(), record)?)
            }

            fn to_row(&self) -> ::std::vec::Vec<::sequin_spec::record::Cell> {
                ::std::vec![#(#to_cells),*]
            }

            fn from_row(row: ::std::vec::Vec<::sequin_spec::record::Cell>) -> ::std::result::Result<Self, ::sequin_spec::record::DecodeError> {
                let cols = Self::columns();
                let mut cells = row.into_iter();
                ::std::result::Result::Ok(Self {
                    #(#idents: ::sequin_spec::record::take(&mut cells, &cols[#indexes])?,)*
                })
            }
        }
    })
}

fn opt(v: Option<TokenStream2>) -> TokenStream2 {
    match v {
        Some(t) => quote!(::std::option::Option::Some(#t)),
        None => quote!(::std::option::Option::None),
    }
}
