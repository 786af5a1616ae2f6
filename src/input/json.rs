//! The JSON layer both inputs share: a [`Reader`] that keeps our errors
//! apart from serde's, and [`Loose`] values borrowed from the input.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

use anyhow::{Result, anyhow};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Reads one JSON document, keeping our own errors (which name the entry, the
/// store path and the field) apart from serde's, which cannot carry them.
pub(crate) struct Reader<'s> {
    pub(crate) store_dir: &'s str,
    /// Set when a value was rejected: the error to report.
    invalid: RefCell<Option<anyhow::Error>>,
    /// Set when serde failed inside a part we can name, e.g. `closure entry 3`.
    failed_in: RefCell<Option<String>>,
}

impl<'s> Reader<'s> {
    pub(crate) fn new(store_dir: &'s str) -> Self {
        Self { store_dir, invalid: RefCell::new(None), failed_in: RefCell::new(None) }
    }

    pub(crate) fn read<'de, T>(
        &self,
        json: &'de str,
        parse: impl FnOnce(&mut serde_json::Deserializer<serde_json::de::StrRead<'de>>, &Self) -> serde_json::Result<T>,
    ) -> Result<T> {
        let mut de = serde_json::Deserializer::from_str(json);
        let result = parse(&mut de, self).and_then(|value| de.end().map(|()| value));
        result.map_err(|e| {
            if let Some(invalid) = self.invalid.take() {
                return invalid;
            }
            let syntax = e.is_syntax() || e.is_eof();
            let e = anyhow!(e);
            let e = match self.failed_in.take() {
                Some(part) => e.context(part),
                None => e,
            };
            if syntax { e.context("not valid JSON") } else { e }
        })
    }

    /// Records `error` as the reason to stop and returns the serde error that stops.
    pub(crate) fn reject<E: de::Error>(&self, error: anyhow::Error) -> E {
        *self.invalid.borrow_mut() = Some(error);
        E::custom("invalid value")
    }

    pub(crate) fn failed_in<E>(&self, part: impl FnOnce() -> String) -> impl FnOnce(E) -> E {
        move |e| {
            self.failed_in.borrow_mut().get_or_insert_with(part);
            e
        }
    }
}

/// A JSON value reduced to what validation needs: strings borrowed from the
/// input where they hold no escapes, lists kept, objects skipped unbuilt.
#[derive(Debug, Default)]
pub(crate) enum Loose<'a> {
    /// The field is absent (`#[serde(default)]`).
    #[default]
    Missing,
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    Str(Cow<'a, str>),
    List(Vec<Loose<'a>>),
    Object,
}

impl Loose<'_> {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Unsigned(_) | Self::Signed(_) | Self::Float(_) => "a number",
            Self::Str(_) => "a string",
            Self::List(_) => "a list",
            Self::Object => "an object",
        }
    }

    fn integer(&self) -> Option<i64> {
        match *self {
            Self::Unsigned(n) => i64::try_from(n).ok(),
            Self::Signed(n) => Some(n),
            _ => None,
        }
    }

    /// An optional integer field as a `T`: `None` when missing or null, an
    /// error saying it must be `what` (or null) when it is no such `T`.
    pub(crate) fn optional_integer<T: TryFrom<i64>>(&self, field: &str, what: &str) -> Result<Option<T>> {
        match self {
            Self::Missing | Self::Null => Ok(None),
            v => v
                .integer()
                .and_then(|n| T::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| anyhow!("field `{field}` must be {what} or null, not {v}")),
        }
    }
}

/// The error for a field that is missing or holds the wrong kind of value.
pub(crate) fn wrong(field: impl fmt::Display, expected: &str, found: &Loose) -> anyhow::Error {
    match found {
        Loose::Missing => anyhow!("{field} is missing"),
        other => anyhow!("{field} must be {expected}, not {}", other.kind()),
    }
}

impl fmt::Display for Loose<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Unsigned(n) => write!(f, "{n}"),
            Self::Signed(n) => write!(f, "{n}"),
            Self::Float(n) => write!(f, "{n}"),
            Self::Str(s) => write!(f, "{s:?}"),
            other => f.write_str(other.kind()),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Loose<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LooseVisitor(PhantomData))
    }
}

struct LooseVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for LooseVisitor<'a> {
    type Value = Loose<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Loose::Bool(b))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Loose::Unsigned(n))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Loose::Signed(n))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Self::Value, E> {
        Ok(Loose::Float(n))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Loose::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Object)
    }
}
