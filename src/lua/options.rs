//! Option tables as typed structs. Each function's options are one struct, declared
//! with [`options!`] next to the function, and read from the Lua table entry by entry
//! (each value a [`Scalar`], made into its field's type by [`FromScalar`]): a key the
//! struct does not have, a value without a name, or a value of the wrong type is
//! refused with a message that names the key.
//!
//! Values convert as Lua converts them (a number where a string is wanted, a numeric
//! string where a number is); handles (Netns, Link) arrive as themselves, so an `ns =`
//! or `dev =` option takes a handle or a name ([`NsArg`], [`LinkArg`]).

use mlua::{FromLua, Lua, Table, Value, Variadic};

use super::handles::{LLink, LNetns, LProcess};
use super::util::{fail, with};
use crate::error::Error;
use crate::model::NsRef;

/// An options struct: its keys (for "known options: ...", the API table's check, and
/// the per-kind checks of `link.add`) and which of them a call gave.
pub trait Options: Default {
    const KEYS: &'static [&'static str];
    /// The keys given a value, in declaration order.
    fn given(&self) -> Vec<&'static str>;
    /// Sets the option `key` (one of `KEYS`) from `v`, or says why `v` cannot be it.
    fn set(&mut self, key: &str, v: Scalar) -> Result<(), String>;
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
        #[derive(Debug, Default)]
        $vis struct $name {
            $($(#[$fm])* pub $field: Option<$ty>,)*
        }
        impl crate::lua::options::Options for $name {
            const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];
            fn given(&self) -> Vec<&'static str> {
                let mut v = Vec::new();
                $(if self.$field.is_some() { v.push(stringify!($field)); })*
                v
            }
            #[allow(unused_variables)]
            fn set(&mut self, key: &str, v: crate::lua::options::Scalar) -> Result<(), String> {
                match key {
                    $(stringify!($field) => {
                        self.$field = Some(<$ty as crate::lua::options::FromScalar>::from_scalar(v)?);
                        Ok(())
                    })*
                    _ => Err(format!("no option named \"{key}\"")),
                }
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
    opts: Opts,
    f: impl FnOnce(&mut crate::session::Session, &NsRef) -> crate::error::Result<T>,
) -> mlua::Result<T> {
    let o: NsOnly = read(lua, &call, opts)?;
    let ns = ns(lua, &call, o.ns)?;
    with(lua, move || call, |s| f(s, &ns))
}

/// The last parameters of a function that takes options: the table, and whatever
/// follows it (refused by [`read`]), as in `(name, opts): (String, Opts)`. Without
/// the rest, Lua would drop an argument past the table silently (options split over
/// two tables: the second ignored).
pub type Opts = (Option<Table>, Variadic<Value>);

/// Reads `t` as the options `T`, refusing arguments after it; errors read
/// `file:line: call: reason`.
pub fn read<T: Options>(lua: &Lua, call: &str, (t, rest): Opts) -> mlua::Result<T> {
    if !rest.is_empty() {
        return Err(fail(
            lua,
            call,
            Error::invalid(
                "unexpected extra argument: more arguments than it takes (its options go in one table, the last argument)",
            ),
        ));
    }
    match t {
        None => Ok(T::default()),
        Some(t) => from_table(&t)?.map_err(|why| fail(lua, call, Error::invalid(why))),
    }
}

/// The options `T` in `t`, or why not (the key named); the outer error is Lua's own
/// (a table that cannot be walked).
fn from_table<T: Options>(t: &Table) -> mlua::Result<Result<T, String>> {
    let mut o = T::default();
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let key = match &k {
            Value::String(s) => s.to_string_lossy(),
            Value::Integer(i) => {
                return Ok(Err(format!(
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
            return Ok(Err(format!("unknown option \"{key}\" ({hint})")));
        }
        if let Err(why) = o.set(&key, Scalar::of(&v)) {
            return Ok(Err(format!("option {key}: {why}")));
        }
    }
    Ok(Ok(o))
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
    /// What a value in an options table is: handles as themselves, anything else
    /// that is not a scalar by its Lua type name.
    fn of(v: &Value) -> Scalar {
        match v {
            Value::Boolean(b) => Scalar::Bool(*b),
            Value::Integer(i) => Scalar::Int(*i),
            Value::Number(n) => Scalar::Num(*n),
            Value::String(s) => Scalar::Str(s.to_string_lossy()),
            Value::UserData(ud) => {
                if let Ok(n) = ud.borrow::<LNetns>() {
                    Scalar::Netns(n.ns.clone())
                } else if let Ok(l) = ud.borrow::<LLink>() {
                    Scalar::Link(l.clone())
                } else if ud.is::<LProcess>() {
                    Scalar::Other("Process")
                } else {
                    Scalar::Other("userdata")
                }
            }
            other => Scalar::Other(other.type_name()),
        }
    }

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

/// A type an option can have: made from a [`Scalar`], or the reason it cannot be
/// (the caller adds the key).
pub trait FromScalar: Sized {
    fn from_scalar(v: Scalar) -> Result<Self, String>;
}

fn expected<T>(what: &str, v: &Scalar) -> Result<T, String> {
    Err(format!("expected {what}, got {}", v.type_name()))
}

/// What a value that is not the integer wanted was: a number itself (out of range, or
/// not whole), a numeric string quoted, anything else by its type.
fn got(v: &Scalar) -> String {
    match v {
        Scalar::Int(i) => i.to_string(),
        Scalar::Num(n) => lua_number(*n),
        Scalar::Str(s) if v.number().is_some() => format!("{s:?}"),
        v => v.type_name().to_string(),
    }
}

/// A float as Lua's `tostring` writes it (`%.14g`, and ".0" after a whole number):
/// 1.5, 70000.0, 1e+20, -inf.
fn lua_number(n: f64) -> String {
    if n.is_nan() {
        return if n.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "inf" } else { "-inf" }.into();
    }
    // %g with 14 significant digits: the exponent of the rounded number decides.
    let e_form = format!("{n:.13e}");
    let (mantissa, exp) = e_form.split_once('e').unwrap_or((&e_form, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| {
        if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s.to_string() }
    };
    let s = if !(-4..14).contains(&exp) {
        format!("{}e{}{:02}", trim(mantissa), if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        trim(&format!("{n:.*}", (13 - exp) as usize))
    };
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'-') { format!("{s}.0") } else { s }
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
                    None => Err(format!("expected {}, got {}", $what, got(&v))),
                }
            }
        }
    )*};
}
integers!(u16 => "an integer from 0 to 65535", u32 => "a non-negative integer", u64 => "a non-negative integer");

/// A positional argument read as an option value is (`(addr, Arg(port)): (String,
/// Arg<u16>)`): a number out of range or not whole is refused showing it ("expected an
/// integer from 0 to 65535, got 70000"), which mlua's own conversion cannot say (its
/// error holds the value's type only). The error is the argument's: mlua makes it
/// "bad argument #N to f: ...".
pub struct Arg<T>(pub T);

impl<T: FromScalar> FromLua for Arg<T> {
    fn from_lua(v: Value, _: &Lua) -> mlua::Result<Arg<T>> {
        T::from_scalar(Scalar::of(&v)).map(Arg).map_err(mlua::Error::RuntimeError)
    }
}

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
        from_table(&t).unwrap()
    }

    #[test]
    fn values_convert_as_lua_converts_them() {
        let o = run(r#"{n = "80", s = 5, b = false}"#).unwrap();
        assert_eq!((o.n, o.s.as_deref(), o.b), (Some(80), Some("5"), Some(false)));
        assert_eq!(run("{n = 8.0}").unwrap().n, Some(8));
        assert_eq!(run("{s = 2.5}").unwrap().s.as_deref(), Some("2.5"));
        assert_eq!(run("{n = 70000}").unwrap_err(), "option n: expected an integer from 0 to 65535, got 70000");
        assert_eq!(run("{n = -1}").unwrap_err(), "option n: expected an integer from 0 to 65535, got -1");
        assert_eq!(run("{n = 1.5}").unwrap_err(), "option n: expected an integer from 0 to 65535, got 1.5");
        assert_eq!(run("{n = 1e20}").unwrap_err(), "option n: expected an integer from 0 to 65535, got 1e+20");
        assert_eq!(run("{n = 70000.0}").unwrap_err(), "option n: expected an integer from 0 to 65535, got 70000.0");
        assert_eq!(
            run(r#"{n = "70000"}"#).unwrap_err(),
            "option n: expected an integer from 0 to 65535, got \"70000\""
        );
        assert_eq!(run(r#"{n = "many"}"#).unwrap_err(), "option n: expected an integer from 0 to 65535, got string");
        assert_eq!(run("{n = true}").unwrap_err(), "option n: expected an integer from 0 to 65535, got boolean");
        assert_eq!(run(r#"{b = "yes"}"#).unwrap_err(), "option b: expected a boolean, got string");
        assert_eq!(run("{s = {}}").unwrap_err(), "option s: expected a string, got table");
        assert_eq!(run("{s = print}").unwrap_err(), "option s: expected a string, got function");
        assert_eq!(run("{x = 1}").unwrap_err(), "unknown option \"x\" (known options: n, s, b, ns, dev)");
        assert!(run("{1}").unwrap_err().starts_with("the options table has a value without a name at position 1"));
        assert!(run("{}").unwrap().given().is_empty());
    }

    #[test]
    fn handles_arrive_as_themselves() {
        let lua = Lua::new();
        lua.globals().set("h", lua.create_userdata(LNetns { ns: NsRef::Host }).unwrap()).unwrap();
        lua.globals().set("n", lua.create_userdata(LNetns { ns: NsRef::named("a") }).unwrap()).unwrap();
        let l = LLink { ns: NsRef::named("a"), name: "v".into() };
        lua.globals().set("l", lua.create_userdata(l).unwrap()).unwrap();
        lua.globals().set("p", lua.create_userdata(LProcess { pid: 1, cmd: "x".into() }).unwrap()).unwrap();
        let get = |src: &str| {
            let t: Table = lua.load(src).eval().unwrap();
            from_table::<T>(&t).unwrap()
        };
        assert!(matches!(get("{ns = h}").unwrap().ns, Some(NsArg::Handle(NsRef::Host))));
        assert!(matches!(get("{ns = n}").unwrap().ns, Some(NsArg::Handle(NsRef::Named(ref a))) if a == "a"));
        assert!(matches!(get(r#"{ns = "b"}"#).unwrap().ns, Some(NsArg::Name(ref b)) if b == "b"));
        let dev = get("{dev = l}").unwrap().dev.unwrap().link(&NsRef::Host);
        assert_eq!((dev.ns, dev.name.as_str()), (NsRef::named("a"), "v"));
        assert_eq!(get("{ns = l}").unwrap_err(), "option ns: expected a Netns or a namespace name, got Link");
        assert_eq!(get("{dev = n}").unwrap_err(), "option dev: expected a Link or a link name, got Netns");
        assert_eq!(get("{s = n}").unwrap_err(), "option s: expected a string, got Netns");
        assert_eq!(get("{ns = p}").unwrap_err(), "option ns: expected a Netns or a namespace name, got Process");
    }

    #[test]
    fn numbers_show_as_lua_shows_them() {
        let lua = Lua::new();
        for src in
            ["1.5", "-0.25", "70000.0", "1e15", "1e20", "-1e-5", "0.1", "1/3", "2^53", "1/0", "-1/0", "123456789012.5"]
        {
            let want: String = lua.load(format!("return tostring({src})")).eval().unwrap();
            let n: f64 = lua.load(format!("return {src}")).eval().unwrap();
            assert_eq!(lua_number(n), want, "{src}");
        }
    }

    #[test]
    fn keys_and_given() {
        assert_eq!(T::KEYS, &["n", "s", "b", "ns", "dev"]);
        assert_eq!(run("{b = true, n = 1}").unwrap().given(), vec!["n", "b"]);
    }
}
