//! Option tables as typed structs. Each function's options are one struct, declared
//! with [`options!`] next to the function, and read from the Lua table by serde (mlua's
//! `serde` support): a key the struct does not have, a value without a name, or a value
//! of the wrong type is refused with a message that names the key.
//!
//! Values convert as Lua converts them (a number where a string is wanted, a numeric
//! string where a number is); handles (Netns, Link) arrive as themselves, so an `ns =`
//! or `dev =` option takes a handle or a name ([`NsArg`], [`LinkArg`]).

use mlua::{Lua, LuaSerdeExt, Table, Value};
use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::handles::{LLink, LNetns};
use super::util::{fail, with};
use crate::error::Error;
use crate::model::NsRef;

/// An options struct: its keys (for "known options: ...", the API table's check, and
/// the per-kind checks of `link.add`) and which of them a call gave.
pub trait Options: Default + for<'de> Deserialize<'de> {
    const KEYS: &'static [&'static str];
    /// The keys given a value, in declaration order.
    fn given(&self) -> Vec<&'static str>;
}

/// Declares an options struct: every field is optional, read with Lua's conversions,
/// and any other key is refused.
///
/// ```ignore
/// options! { pub struct PingOpts { count: u32, timeout: f64 } }
/// ```
macro_rules! options {
    ($(#[$m:meta])* $vis:vis struct $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields, default)]
        $vis struct $name {
            $($(#[$fm])* #[serde(deserialize_with = "crate::lua::options::scalar")] pub $field: Option<$ty>,)*
        }
        impl crate::lua::options::Options for $name {
            const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];
            fn given(&self) -> Vec<&'static str> {
                let mut v = Vec::new();
                $(if self.$field.is_some() { v.push(stringify!($field)); })*
                v
            }
        }
    };
}
pub(crate) use options;

options! {
    /// Options of a function whose only option is `ns`.
    pub struct NsOnly { ns: NsArg }
}

/// The common shape of a function whose only option is `ns`: checks the options,
/// resolves the namespace, runs `f` on the session (errors read `file:line: call: reason`).
pub fn ns_only<T>(
    lua: &Lua,
    call: String,
    opts: Option<Table>,
    f: impl FnOnce(&mut crate::session::Session, &NsRef) -> crate::error::Result<T>,
) -> mlua::Result<T> {
    let o: NsOnly = read(lua, &call, opts)?;
    let ns = ns(lua, &call, o.ns)?;
    with(lua, move || call, |s| f(s, &ns))
}

/// Reads `t` as the options `T`; errors read `file:line: call: reason`.
pub fn read<T: Options>(lua: &Lua, call: &str, t: Option<Table>) -> mlua::Result<T> {
    let Some(t) = t else { return Ok(T::default()) };
    let refuse = |why: String| fail(lua, call, Error::invalid(why));
    let mut keys = Vec::new();
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let key = match &k {
            Value::String(s) => s.to_string_lossy(),
            Value::Integer(i) => {
                return Err(refuse(format!(
                    "the options table has a value without a name at position {i}; options are named, like {{{} = ...}}",
                    T::KEYS.first().unwrap_or(&"ns")
                )));
            }
            other => other.type_name().to_string(),
        };
        if !T::KEYS.contains(&key.as_str()) {
            let hint = if T::KEYS.is_empty() {
                "it takes no options".to_string()
            } else {
                format!("known options: {}", T::KEYS.join(", "))
            };
            return Err(refuse(format!("unknown option \"{key}\" ({hint})")));
        }
        keys.push((key, v));
    }
    if keys.is_empty() {
        return Ok(T::default());
    }
    match lua.from_value::<T>(Value::Table(t)) {
        Ok(o) => Ok(o),
        // serde names the wrong value, not its key: find the key by reading the
        // entries one at a time (only on this error path).
        Err(e) => {
            for (key, v) in keys {
                let one = lua.create_table()?;
                one.set(key.as_str(), v)?;
                if let Err(e) = lua.from_value::<T>(Value::Table(one)) {
                    return Err(refuse(format!("option {key}: {}", reason(&e))));
                }
            }
            Err(refuse(reason(&e)))
        }
    }
}

fn reason(e: &mlua::Error) -> String {
    match e {
        mlua::Error::DeserializeError(s) | mlua::Error::SerializeError(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A Lua value in an options table, as far as options care.
#[derive(Debug)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Num(f64),
    Str(String),
    Netns(NsRef),
    Link(LLink),
    /// Anything else, by its Lua type name ("table").
    Other(&'static str),
}

impl Scalar {
    fn type_name(&self) -> &'static str {
        match self {
            Scalar::Bool(_) => "boolean",
            Scalar::Int(_) => "integer",
            Scalar::Num(_) => "number",
            Scalar::Str(_) => "string",
            Scalar::Netns(_) => "Netns",
            Scalar::Link(_) => "Link",
            Scalar::Other(t) => t,
        }
    }

    /// The number this value is for Lua's arithmetic conversions ("5" is 5).
    fn number(&self) -> Option<f64> {
        match self {
            Scalar::Int(i) => Some(*i as f64),
            Scalar::Num(n) => Some(*n),
            Scalar::Str(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
    }

    /// The integer this value is, as Lua's `math.tointeger` would say.
    fn integer(&self) -> Option<i64> {
        match self {
            Scalar::Int(i) => Some(*i),
            Scalar::Str(s) => s.trim().parse().ok().or_else(|| self.integral()),
            _ => self.integral(),
        }
    }

    /// The number this value is, when it is a whole one that fits an i64.
    fn integral(&self) -> Option<i64> {
        self.number().filter(|n| n.fract() == 0.0 && n.abs() < 9.2e18).map(|n| n as i64)
    }
}

/// How a handle serializes (`Lua::create_ser_userdata`): a newtype struct, which a
/// script's own tables never are, so a handle is told from a table by its shape.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Handle {
    Link(Option<String>, String),
    Netns(Option<String>),
}

impl serde::Serialize for LNetns {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_newtype_struct("Netns", &Option::<String>::from(self.ns.clone()))
    }
}

impl serde::Serialize for LLink {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_newtype_struct("Link", &(Option::<String>::from(self.ns.clone()), &self.name))
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a Lua value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(i64::try_from(v).map_or(Scalar::Num(v as f64), Scalar::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Num(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Scalar, E> {
                Ok(Scalar::Str(String::from_utf8_lossy(v).into_owned()))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other("nil"))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Scalar, A::Error> {
                Ok(Scalar::Other("table"))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Scalar, A::Error> {
                Ok(Scalar::Other("table"))
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
                Ok(match Handle::deserialize(d)? {
                    Handle::Link(ns, name) => Scalar::Link(LLink { ns: ns.into(), name }),
                    Handle::Netns(ns) => Scalar::Netns(ns.into()),
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A type an option can have: made from a [`Scalar`], or the reason it cannot be
/// (the caller adds the key).
pub trait FromScalar: Sized {
    fn from_scalar(v: Scalar) -> Result<Self, String>;
}

fn expected<T>(what: &str, v: &Scalar) -> Result<T, String> {
    Err(format!("expected {what}, got {}", v.type_name()))
}

/// serde's `deserialize_with` for every options field.
pub fn scalar<'de, D: Deserializer<'de>, T: FromScalar>(d: D) -> Result<Option<T>, D::Error> {
    T::from_scalar(Scalar::deserialize(d)?).map(Some).map_err(de::Error::custom)
}

impl FromScalar for bool {
    fn from_scalar(v: Scalar) -> Result<bool, String> {
        match v {
            Scalar::Bool(b) => Ok(b),
            v => expected("a boolean", &v),
        }
    }
}

impl FromScalar for String {
    fn from_scalar(v: Scalar) -> Result<String, String> {
        match v {
            Scalar::Str(s) => Ok(s),
            Scalar::Int(i) => Ok(i.to_string()),
            // Lua's tostring: "2.0", "0.5".
            Scalar::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => Ok(format!("{n:.1}")),
            Scalar::Num(n) => Ok(n.to_string()),
            v => expected("a string", &v),
        }
    }
}

impl FromScalar for f64 {
    fn from_scalar(v: Scalar) -> Result<f64, String> {
        v.number().map_or_else(|| expected("a number", &v), Ok)
    }
}

macro_rules! integers {
    ($($t:ty => $what:expr),*) => {$(
        impl FromScalar for $t {
            fn from_scalar(v: Scalar) -> Result<$t, String> {
                match v.integer().and_then(|i| <$t>::try_from(i).ok()) {
                    Some(i) => Ok(i),
                    None => expected($what, &v),
                }
            }
        }
    )*};
}
integers!(u16 => "an integer from 0 to 65535", u32 => "a non-negative integer", u64 => "a non-negative integer");

/// A namespace option (`ns = ...`): a Netns handle or the name of one.
#[derive(Debug)]
pub enum NsArg {
    Handle(NsRef),
    Name(String),
}

impl FromScalar for NsArg {
    fn from_scalar(v: Scalar) -> Result<NsArg, String> {
        match v {
            Scalar::Netns(ns) => Ok(NsArg::Handle(ns)),
            Scalar::Str(s) => Ok(NsArg::Name(s)),
            v => expected("a Netns or a namespace name", &v),
        }
    }
}

/// Resolves a namespace option: the host when absent; a name must be a namespace.
pub fn ns(lua: &Lua, call: &str, v: Option<NsArg>) -> mlua::Result<NsRef> {
    match v {
        None => Ok(NsRef::Host),
        Some(NsArg::Handle(ns)) => Ok(ns),
        Some(NsArg::Name(name)) => with(lua, || call.to_string(), |se| se.netns_get(&name)),
    }
}

/// A link option (`dev = ...`, `parent = ...`): a Link handle or a link name.
#[derive(Debug)]
pub enum LinkArg {
    Handle(LLink),
    Name(String),
}

impl FromScalar for LinkArg {
    fn from_scalar(v: Scalar) -> Result<LinkArg, String> {
        match v {
            Scalar::Link(l) => Ok(LinkArg::Handle(l)),
            Scalar::Str(s) => Ok(LinkArg::Name(s)),
            v => expected("a Link or a link name", &v),
        }
    }
}

impl LinkArg {
    /// The link: a handle as it is, a name in `ns`.
    pub fn link(self, ns: &NsRef) -> LLink {
        match self {
            LinkArg::Handle(l) => l,
            LinkArg::Name(name) => LLink { ns: ns.clone(), name },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    options! { struct T { n: u16, s: String, b: bool, ns: NsArg, dev: LinkArg } }

    fn run(src: &str) -> Result<T, String> {
        let lua = Lua::new();
        let t: Table = lua.load(src).eval().unwrap();
        let o = lua.from_value::<T>(Value::Table(t)).map_err(|e| reason(&e))?;
        Ok(o)
    }

    #[test]
    fn values_convert_as_lua_converts_them() {
        let o = run(r#"{n = "80", s = 5, b = false}"#).unwrap();
        assert_eq!((o.n, o.s.as_deref(), o.b), (Some(80), Some("5"), Some(false)));
        assert_eq!(run("{n = 8.0}").unwrap().n, Some(8));
        assert_eq!(run("{s = 2.5}").unwrap().s.as_deref(), Some("2.5"));
        assert_eq!(run("{n = 70000}").unwrap_err(), "expected an integer from 0 to 65535, got integer");
        assert_eq!(run("{n = 1.5}").unwrap_err(), "expected an integer from 0 to 65535, got number");
        assert_eq!(run(r#"{b = "yes"}"#).unwrap_err(), "expected a boolean, got string");
        assert_eq!(run("{s = {}}").unwrap_err(), "expected a string, got table");
        assert!(run("{x = 1}").unwrap_err().contains("unknown field `x`"));
    }

    #[test]
    fn handles_arrive_as_themselves() {
        let lua = Lua::new();
        lua.globals().set("h", lua.create_ser_userdata(LNetns { ns: NsRef::Host }).unwrap()).unwrap();
        lua.globals().set("n", lua.create_ser_userdata(LNetns { ns: NsRef::named("a") }).unwrap()).unwrap();
        let l = LLink { ns: NsRef::named("a"), name: "v".into() };
        lua.globals().set("l", lua.create_ser_userdata(l).unwrap()).unwrap();
        let get = |src: &str| {
            let t: Table = lua.load(src).eval().unwrap();
            lua.from_value::<T>(Value::Table(t)).map_err(|e| reason(&e))
        };
        assert!(matches!(get("{ns = h}").unwrap().ns, Some(NsArg::Handle(NsRef::Host))));
        assert!(matches!(get("{ns = n}").unwrap().ns, Some(NsArg::Handle(NsRef::Named(ref a))) if a == "a"));
        assert!(matches!(get(r#"{ns = "b"}"#).unwrap().ns, Some(NsArg::Name(ref b)) if b == "b"));
        let dev = get("{dev = l}").unwrap().dev.unwrap().link(&NsRef::Host);
        assert_eq!((dev.ns, dev.name.as_str()), (NsRef::named("a"), "v"));
        assert_eq!(get("{ns = l}").unwrap_err(), "expected a Netns or a namespace name, got Link");
        assert_eq!(get("{dev = n}").unwrap_err(), "expected a Link or a link name, got Netns");
        assert_eq!(get("{s = n}").unwrap_err(), "expected a string, got Netns");
    }

    #[test]
    fn keys_and_given() {
        assert_eq!(T::KEYS, &["n", "s", "b", "ns", "dev"]);
        assert_eq!(run("{b = true, n = 1}").unwrap().given(), vec!["n", "b"]);
    }
}
