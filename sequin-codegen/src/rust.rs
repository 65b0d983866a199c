//! Rust generation: a module per connector with a typed struct per static
//! object (annotated for `sequin-derive`) and the connector descriptor, plus
//! the registry module listing every compiled-in connector.
//!
//! Code is built as tokens and formatted with prettyplease, so output is
//! deterministic and independent of the developer's rustfmt.

use heck::ToUpperCamelCase;
use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote};
use sequin_spec::model::{Access, Connector, Field, FieldType, Format, Object, TimeFormat};

/// The generated module of one connector.
pub fn connector_module(c: &Connector, source: &str) -> Result<String, crate::Error> {
    let name = &c.name;
    let display = &c.display_name;
    let display_doc = format!(" The name used in client-visible errors (`[{display}]: ...`).");
    let spec_json = raw_string(&serde_json::to_string_pretty(c).expect("the model serializes"));
    let structs: Vec<TokenStream> = c.objects.iter().map(|o| object_struct(c, o)).collect();
    let arms: Vec<TokenStream> = c
        .objects
        .iter()
        .map(|o| {
            let table = &o.name;
            let ty = struct_ident(o);
            quote! { #table => Some(<#ty as Record>::columns()), }
        })
        .collect();
    let uses_record = !c.objects.is_empty();
    let imports = imports(c);
    let columns_fn = if uses_record {
        quote! {
            /// The columns of a static object, by table name.
            pub fn object_columns(table: &str) -> Option<&'static [Column]> {
                match table {
                    #(#arms)*
                    _ => None,
                }
            }
        }
    } else {
        quote! {
            /// The columns of a static object, by table name (this connector
            /// has none: its objects are discovered at run time).
            pub fn object_columns(_table: &str) -> Option<&'static [Column]> {
                None
            }
        }
    };
    let tokens = quote! {
        #imports

        /// The connector's name.
        pub const NAME: &str = #name;

        #[doc = #display_doc]
        pub const DISPLAY_NAME: &str = #display;

        /// The validated spec, as canonical JSON of [`sequin_spec::Connector`].
        pub const SPEC_JSON: &str = #spec_json;

        #columns_fn

        #(#structs)*
    };
    let doc = format!(
        "//! {}.\n//!\n//! The {display} connector: typed records of its static objects and its descriptor.\n\n",
        crate::header(source)
    );
    format_file(&doc, tokens)
}

fn imports(c: &Connector) -> TokenStream {
    let mut wrappers: Vec<Ident> = Vec::new();
    let all: Vec<&Field> = c.objects.iter().flat_map(|o| o.fields.iter()).collect();
    for (ty, name) in [
        (FieldType::Date, "Date"),
        (FieldType::Decimal, "Decimal"),
        (FieldType::Timestamp, "Timestamp"),
    ] {
        if all.iter().any(|f| f.ty == ty) {
            wrappers.push(Ident::new(name, Span::call_site()));
        }
    }
    if c.objects.is_empty() {
        quote! { use sequin_spec::record::Column; }
    } else {
        quote! { use sequin_spec::record::{Column, Record, #(#wrappers),*}; }
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
    let doc = format!(
        " A {} `{}` record (table `{}`).{}",
        c.display_name,
        o.api_name,
        o.name,
        o.description
            .as_deref()
            .map(|d| format!("\n\n {}", d.trim()))
            .unwrap_or_default()
    );
    let fields: Vec<TokenStream> = o
        .fields
        .iter()
        .map(|f| struct_field(f, f.name == o.primary_key))
        .collect();
    quote! {
        #[doc = #doc]
        #[derive(Clone, Debug, PartialEq, sequin_derive::Record)]
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
    if f.merge == Some(sequin_spec::model::Merge::Keys) {
        attrs.push(quote!(merge_keys));
    }
    let access_doc = match f.access {
        Access::ReadOnly => "read-only",
        Access::CreateOnly => "create-only",
        Access::Writable => "writable",
    };
    let doc = match &f.description {
        Some(d) => format!(" `{}` ({access_doc}): {}", f.name, d.trim()),
        None => format!(" `{}` ({access_doc}).", f.name),
    };
    quote! {
        #[doc = #doc]
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

/// The registry of every compiled-in connector.
pub fn registry_module(connectors: &[&Connector]) -> Result<String, crate::Error> {
    let mods: Vec<Ident> = connectors
        .iter()
        .map(|c| format_ident!("{}", c.name))
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
    let tokens = quote! {
        #(pub mod #mods;)*

        /// A connector compiled into this binary.
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

        /// Every compiled-in connector, by name.
        pub const ALL: &[Compiled] = &[#(#entries)*];
    };
    let doc = format!(
        "//! {}.\n//!\n//! Every compiled-in connector (one module per `connectors/*.yaml`).\n\n",
        crate::header("connectors/*.yaml")
    );
    format_file(&doc, tokens)
}

/// A raw string literal (`r##"..."##`) so embedded JSON stays readable.
fn raw_string(s: &str) -> proc_macro2::Literal {
    let mut hashes = String::from("#");
    while s.contains(&format!("\"{hashes}")) {
        hashes.push('#');
    }
    format!("r{hashes}\"{s}\"{hashes}")
        .parse()
        .expect("a raw string literal parses")
}

/// Formats generated tokens: prettyplease first (deterministic structure),
/// then rustfmt so `cargo fmt --check` agrees with the committed file.
fn format_file(doc: &str, tokens: TokenStream) -> Result<String, crate::Error> {
    let file: syn::File = syn::parse2(tokens).expect("generated tokens parse as a file");
    let text = format!("{doc}{}", prettyplease::unparse(&file));
    crate::rustfmt(&text)
}
