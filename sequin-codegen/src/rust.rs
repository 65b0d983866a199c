//! Rust generation: a module per connector with a typed struct per static
//! object (annotated for `sequin-derive`, deserializable from a synced row)
//! and the connector descriptor, plus the crate root of `sequin-connectors`
//! listing every compiled-in connector.
//!
//! Code is built as tokens, one top-level item at a time, printed with
//! prettyplease (items joined by a blank line, docs as `///` lines), then
//! passed through the toolchain's rustfmt so that `cargo fmt --check` agrees
//! with the committed files. The validated spec is not Rust: it goes to a
//! sibling `<name>.spec.json` that the module includes with `include_str!`.

use heck::ToUpperCamelCase;
use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote};
use sequin_spec::model::{Access, Connector, Field, FieldType, Format, Object, TimeFormat};

/// The generated module of one connector; its spec is `spec_file` beside it.
pub fn connector_module(
    c: &Connector,
    source: &str,
    spec_file: &str,
) -> Result<String, crate::Error> {
    let name = &c.name;
    let display = &c.display_name;
    let display_doc = format!(" The name used in client-visible errors (`[{display}]: ...`).");
    // Link tables (`links:`) are tables like the objects: typed records too.
    let objects = c.all_objects();
    let arms: Vec<TokenStream> = objects
        .iter()
        .map(|o| {
            let table = &o.name;
            let ty = struct_ident(o);
            quote! { #table => Some(<#ty as Record>::columns()), }
        })
        .collect();
    let columns_fn = if objects.is_empty() {
        quote! {
            /// The columns of a static object, by table name (this connector
            /// has none: its objects are discovered at run time).
            pub fn object_columns(_table: &str) -> Option<&'static [Column]> {
                None
            }
        }
    } else {
        quote! {
            /// The columns of a static object, by table name.
            pub fn object_columns(table: &str) -> Option<&'static [Column]> {
                match table {
                    #(#arms)*
                    _ => None,
                }
            }
        }
    };
    let mut items = vec![
        imports(c),
        quote! {
            /// The connector's name.
            pub const NAME: &str = #name;
        },
        quote! {
            #[doc = #display_doc]
            pub const DISPLAY_NAME: &str = #display;
        },
        quote! {
            /// The validated spec, as canonical JSON of [`sequin_spec::Connector`].
            pub const SPEC_JSON: &str = include_str!(#spec_file);
        },
        columns_fn,
    ];
    items.extend(objects.iter().map(|o| object_struct(c, o)));
    let doc = format!(
        "//! {}.\n//!\n//! The {display} connector: typed records of its static objects and its descriptor.\n",
        crate::header(source)
    );
    format_file(&doc, &items)
}

fn imports(c: &Connector) -> TokenStream {
    let mut wrappers: Vec<Ident> = Vec::new();
    let objects = c.all_objects();
    let all: Vec<&Field> = objects.iter().flat_map(|o| o.fields.iter()).collect();
    for (ty, name) in [
        (FieldType::Date, "Date"),
        (FieldType::Decimal, "Decimal"),
        (FieldType::Timestamp, "Timestamp"),
    ] {
        if all.iter().any(|f| f.ty == ty) {
            wrappers.push(Ident::new(name, Span::call_site()));
        }
    }
    if objects.is_empty() {
        quote! { use sequin_spec::record::Column; }
    } else {
        quote! {
            use sequin_spec::record::{Column, Record, #(#wrappers),*};
            use serde::Deserialize;
        }
    }
}

fn struct_ident(o: &Object) -> Ident {
    format_ident!("{}", o.name.to_upper_camel_case())
}

fn field_ident(column: &str) -> Ident {
    syn::parse_str::<Ident>(column).unwrap_or_else(|_| Ident::new_raw(column, Span::call_site()))
}

fn object_struct(c: &Connector, o: &Object) -> TokenStream {
    let ident = struct_ident(o);
    let table = &o.name;
    let api_name = &o.api_name;
    let mut doc = format!(
        "A {} `{}` record (table `{}`).",
        c.display_name, o.api_name, o.name
    );
    if let Some(d) = o.description.as_deref() {
        doc.push_str("\n\n");
        doc.push_str(d.trim());
    }
    let docs = doc_lines(&doc);
    let fields: Vec<TokenStream> = o
        .fields
        .iter()
        .map(|f| struct_field(f, f.name == o.primary_key))
        .collect();
    quote! {
        #(#docs)*
        #[derive(Clone, Debug, PartialEq, Deserialize, sequin_derive::Record)]
        #[sequin(table = #table, api_name = #api_name)]
        pub struct #ident {
            #(#fields)*
        }
    }
}

fn struct_field(f: &Field, primary_key: bool) -> TokenStream {
    let ident = field_ident(&f.column_name());
    let api = &f.name;
    let base = match f.ty {
        FieldType::String => quote!(String),
        FieldType::Integer => quote!(i64),
        FieldType::Float => quote!(f64),
        FieldType::Decimal => quote!(Decimal),
        FieldType::Boolean => quote!(bool),
        FieldType::Timestamp => quote!(Timestamp),
        FieldType::Date => quote!(Date),
        FieldType::Json => quote!(serde_json::Value),
        FieldType::StringArray => quote!(Vec<String>),
    };
    let ty = if f.nullable {
        quote!(Option<#base>)
    } else {
        base
    };
    let ty_name = serde_name(&f.ty);
    let access = serde_name(&f.access);
    let mut attrs = vec![
        quote!(api = #api),
        quote!(ty = #ty_name),
        quote!(access = #access),
    ];
    if primary_key {
        attrs.insert(0, quote!(primary_key));
    }
    if let Some(p) = &f.path {
        attrs.push(quote!(path = #p));
    }
    if !f.nullable {
        attrs.push(quote!(nullable = false));
    }
    if f.required_on_create {
        attrs.push(quote!(required_on_create));
    }
    if let Some(fmt) = f.format {
        let s = serde_name::<Format>(&fmt);
        attrs.push(quote!(format = #s));
    }
    if let Some(n) = f.max_length {
        let n = Literal::u32_unsuffixed(n);
        attrs.push(quote!(max_length = #n));
    }
    if !f.enum_values.is_empty() {
        let vals = &f.enum_values;
        attrs.push(quote!(values(#(#vals),*)));
    }
    if let Some(p) = &f.pattern {
        attrs.push(quote!(pattern = #p));
    }
    if let Some(tf) = f.time_format
        && tf != TimeFormat::Iso8601
    {
        let s = serde_name(&tf);
        attrs.push(quote!(time_format = #s));
    }
    if f.stringly {
        attrs.push(quote!(stringly));
    }
    if f.external_id {
        attrs.push(quote!(external_id));
    }
    if f.merge == Some(sequin_spec::model::Merge::Keys) {
        attrs.push(quote!(merge_keys));
    }
    let access_doc = match f.access {
        Access::ReadOnly => "read-only",
        Access::CreateOnly => "create-only",
        Access::UpdateOnly => "update-only",
        Access::Writable => "writable",
    };
    let doc = match &f.description {
        Some(d) => format!("`{}` ({access_doc}): {}", f.name, d.trim()),
        None => format!("`{}` ({access_doc}).", f.name),
    };
    let docs = doc_lines(&doc);
    quote! {
        #(#docs)*
        #[sequin(#(#attrs),*)]
        pub #ident: #ty,
    }
}

/// The serde name of a unit enum variant (`read_only`, `unix_seconds`).
fn serde_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .expect("unit variants serialize as strings")
}

/// One `#[doc]` attribute per line, so prettyplease prints `///` lines
/// (a multi-line attribute would come out as a `/** */` block).
fn doc_lines(doc: &str) -> Vec<TokenStream> {
    doc.lines()
        .map(|line| {
            let line = if line.is_empty() {
                String::new()
            } else {
                format!(" {line}")
            };
            quote! { #[doc = #line] }
        })
        .collect()
}

/// The crate root of `sequin-connectors`: every compiled-in connector.
pub fn registry_module(connectors: &[&Connector]) -> Result<String, crate::Error> {
    let mut items: Vec<TokenStream> = connectors
        .iter()
        .map(|c| {
            let m = format_ident!("{}", c.name);
            let doc = format!(" The {} connector.", c.display_name);
            quote! {
                #[doc = #doc]
                pub mod #m;
            }
        })
        .collect();
    let entries: Vec<TokenStream> = connectors
        .iter()
        .map(|c| {
            let m = format_ident!("{}", c.name);
            let sql = format!("{}.sql", c.name);
            quote! {
                Compiled {
                    name: #m::NAME,
                    spec_json: #m::SPEC_JSON,
                    ddl: include_str!(#sql),
                    object_columns: #m::object_columns,
                },
            }
        })
        .collect();
    items.push(quote! {
        /// A connector compiled into this crate.
        pub struct Compiled {
            /// The connector's name (`stripe`).
            pub name: &'static str,
            /// The validated spec as JSON.
            pub spec_json: &'static str,
            /// DDL of its static tables; `:"schema"` stands for the connection's schema.
            pub ddl: &'static str,
            /// Columns of a static object by table name.
            pub object_columns: fn(&str) -> Option<&'static [sequin_spec::record::Column]>,
        }
    });
    items.push(quote! {
        /// Every compiled-in connector, by name.
        pub const ALL: &[Compiled] = &[#(#entries)*];
    });
    let doc = format!(
        "//! {}.\n//!\n{}\n",
        crate::header("connectors/*.yaml"),
        CRATE_DOC
            .lines()
            .map(|l| if l.is_empty() {
                "//!".to_string()
            } else {
                format!("//! {l}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    );
    format_file(&doc, &items)
}

/// What the `sequin-connectors` crate is for (its generated root's docs).
const CRATE_DOC: &str = "\
The connectors compiled into Sequin, one module per `connectors/*.yaml`.

Each module has the connector's name, its validated spec (`SPEC_JSON`,
read by the runtime) and a typed record per static object. A record is
what applications use for the synced tables: `Record::TABLE` and
`Record::columns()` name the table and its columns, and the struct
deserializes (serde) from a row as Postgres's `row_to_json` renders it.
`numeric` columns come back exactly when the JSON holds them as strings
(`amount::text`), through `f64` otherwise.
The runtime reads only `ALL`: each connector's spec, DDL and columns.";

/// Formats generated items: each printed by prettyplease on its own and
/// joined by a blank line, then rustfmt so `cargo fmt --check` agrees with
/// the committed file.
fn format_file(doc: &str, items: &[TokenStream]) -> Result<String, crate::Error> {
    let printed: Vec<String> = items
        .iter()
        .map(|item| {
            let file: syn::File =
                syn::parse2(item.clone()).expect("generated tokens parse as items");
            prettyplease::unparse(&file)
        })
        .collect();
    crate::rustfmt(&format!("{doc}\n{}", printed.join("\n")))
}
