//! Reading an internally tagged enum (`{"op":"add_addr","ns":...}`) without first
//! buffering each object whole.
//!
//! serde's derived form of an internally tagged enum cannot know where the tag is, so
//! it reads every object into a buffer of its own (each string copied) and then reads
//! the variant from that buffer: a good part of the time `down` spends reading a
//! large journal. netscript writes the tag first. `tag_first_enum!` declares the enum
//! as written (its `Serialize` derived as before) together with an externally tagged
//! twin that serde derives with `remote` (the compiler checks that the twin builds the
//! enum's own variants and fields), and a `Deserialize` that hands the twin the tag,
//! read first, as the variant's name and the rest of the object as its fields. An
//! object whose tag is not first (written by hand) is reordered and read the same way.

use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, MapAccess, VariantAccess, Visitor};

/// An enum read by `deserialize`: its tag, and the twin's derived deserializer.
pub trait TagFirst: Sized {
    const TAG: &'static str;
    fn from_variant<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

/// Reads `T` from an object holding its tag (see the module).
pub fn deserialize<'de, T: TagFirst, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_map(ObjectVisitor(PhantomData))
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: TagFirst> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "an object with a \"{}\" field", T::TAG)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        match map.next_key_seed(Key(T::TAG))? {
            Some(None) => T::from_variant(Variant(map)),
            Some(Some(first)) => reordered(first, map),
            None => Err(de::Error::missing_field(T::TAG)),
        }
    }
}

/// An object whose tag is not its first field: read whole, the tag put first, and
/// read again.
fn reordered<'de, T: TagFirst, A: MapAccess<'de>>(first: String, mut map: A) -> Result<T, A::Error> {
    use serde_json::Value;
    let mut fields: Vec<(String, Value)> = vec![(first, map.next_value()?)];
    while let Some(entry) = map.next_entry()? {
        fields.push(entry);
    }
    let at = fields.iter().position(|(k, _)| k == T::TAG).ok_or_else(|| de::Error::missing_field(T::TAG))?;
    fields.swap(0, at);
    let mut again =
        de::value::MapDeserializer::<_, serde_json::Error>::new(fields.into_iter().map(|(k, v)| (Value::String(k), v)));
    again.next_key::<IgnoredAny>().map_err(de::Error::custom)?;
    T::from_variant(Variant(again)).map_err(de::Error::custom)
}

/// A key: None when it is the tag, else its name.
struct Key(&'static str);

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Option<String>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Option<String>, E> {
        Ok((s != self.0).then(|| s.to_string()))
    }
}

/// The rest of an object whose tag is the next value: the twin reads it as an
/// externally tagged variant (the tag its name, the other fields its fields).
struct Variant<A>(A);

impl<'de, A: MapAccess<'de>> Deserializer<'de> for Variant<A> {
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de, A: MapAccess<'de>> EnumAccess<'de> for Variant<A> {
    type Error = A::Error;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(mut self, seed: S) -> Result<(S::Value, Self), A::Error> {
        let name = self.0.next_value_seed(seed)?;
        Ok((name, self))
    }
}

impl<'de, A: MapAccess<'de>> VariantAccess<'de> for Variant<A> {
    type Error = A::Error;

    /// The other fields, if any, are ignored (as serde's internally tagged form does).
    fn unit_variant(mut self) -> Result<(), A::Error> {
        while self.0.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, _: S) -> Result<S::Value, A::Error> {
        Err(de::Error::invalid_type(de::Unexpected::Map, &"a variant with named fields"))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, A::Error> {
        Err(de::Error::invalid_type(de::Unexpected::Map, &"a variant with named fields"))
    }

    fn struct_variant<V: Visitor<'de>>(self, _: &'static [&'static str], visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_map(self.0)
    }
}

/// Declares an internally tagged enum of struct variants (its `serde` attribute
/// first, then its other attributes, as written) and its `Deserialize` through
/// `TagFirst`. The literal after `as` names the enum for serde's `remote`.
macro_rules! tag_first_enum {
    (
        #[serde(tag = $tag:literal, rename_all = $case:literal)]
        $(#[$attr:meta])*
        $vis:vis enum $name:ident as $remote:literal {
            $(
                $(#[$vattr:meta])*
                $variant:ident { $( $(#[$fattr:meta])* $field:ident : $ty:ty ),* $(,)? }
            ),* $(,)?
        }
    ) => {
        $(#[$attr])*
        #[serde(tag = $tag, rename_all = $case)]
        $vis enum $name {
            $( $(#[$vattr])* $variant { $( $(#[$fattr])* $field: $ty ),* } ),*
        }

        const _: () = {
            #[derive(serde::Deserialize)]
            #[serde(remote = $remote, rename_all = $case)]
            enum Twin {
                $( $(#[$vattr])* $variant { $( $(#[$fattr])* $field: $ty ),* } ),*
            }

            impl $crate::tag_first::TagFirst for $name {
                const TAG: &'static str = $tag;
                fn from_variant<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    Twin::deserialize(d)
                }
            }

            impl<'de> serde::Deserialize<'de> for $name {
                fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    $crate::tag_first::deserialize(d)
                }
            }
        };
    };
}
pub(crate) use tag_first_enum;

#[cfg(test)]
mod tests {
    use crate::model::{Family, NsRef};
    use crate::op::Op;

    fn read(s: &str) -> Result<Op, String> {
        serde_json::from_str::<Op>(s).map_err(|e| e.to_string())
    }

    /// The tag first (as netscript writes it) or anywhere else (by hand): the same op.
    /// Fields an op does not have are ignored, as serde's internally tagged form does.
    #[test]
    fn an_op_reads_the_same_wherever_its_tag_is() {
        let want = Op::FwAppend {
            ns: NsRef::named("n1"),
            family: Family::Ipv6,
            table: "filter".into(),
            chain: "FORWARD".into(),
            rule: vec!["-j".into(), "ACCEPT".into()],
        };
        let written = serde_json::to_string(&want).unwrap();
        assert!(written.starts_with("{\"op\":\"fw_append\","), "{written}");
        assert_eq!(read(&written), Ok(want.clone()));
        let fields = r#""ns":"n1","family":"ipv6","table":"filter","chain":"FORWARD","rule":["-j","ACCEPT"]"#;
        assert_eq!(read(&format!(r#"{{{fields},"op":"fw_append"}}"#)), Ok(want.clone()));
        assert_eq!(read(&format!(r#"{{"ns":"n1","op":"fw_append","x":[1,{{}}],{}}}"#, &fields[10..])), Ok(want));
        // Optional fields default as before: an IPv4 rule of an older record.
        assert!(matches!(
            read(r#"{"op":"fw_policy","ns":null,"table":"filter","chain":"FORWARD","target":"DROP"}"#),
            Ok(Op::FwPolicy { family: Family::Ipv4, .. })
        ));
    }

    #[test]
    fn an_op_without_its_tag_or_a_field_or_of_no_known_kind_is_refused() {
        for (s, says) in [
            (r#"{"name":"a"}"#, "missing field `op`"),
            (r#"{}"#, "missing field `op`"),
            (r#"{"op":"add_netns"}"#, "missing field `name`"),
            (r#"{"name":"a","op":"add_netns","name":"b"}"#, "duplicate field `name`"),
            (r#"{"op":"frobnicate","name":"a"}"#, "unknown variant `frobnicate`"),
            (r#"{"name":"a","op":"frobnicate"}"#, "unknown variant `frobnicate`"),
            (r#"{"op":7,"name":"a"}"#, "invalid type"),
            (r#"["add_netns","a"]"#, "invalid type"),
        ] {
            let err = read(s).expect_err(s);
            assert!(err.contains(says), "{s}: {err}");
        }
    }
}
