//! The contract's JSON for every output record, written from the output's
//! description ([`crate::output::Output`]) straight into the caller's buffer:
//! no per-record allocation and no serializer between the record and the
//! bytes.

use std::fmt::{self, Write as _};
use std::sync::LazyLock;

use crate::dataflow::Record;
use crate::decimal::{scaled_digits, Fixed, Wide, NOTIONAL_SCALE, SCALE};
use crate::output::{Column, Presence, Values, OUTPUTS};

/// Every output's keys as written after a value, `,"name":`, made once: a
/// key is then one copy (the first key of an object leaves out the comma).
static KEYS: LazyLock<Vec<Vec<Box<[u8]>>>> = LazyLock::new(|| {
    let key = |column: &Column| format!(",\"{}\":", column.name).into_bytes().into();
    let keys = |columns: &[Column]| columns.iter().map(key).collect();
    OUTPUTS.iter().map(|output| keys(output.columns)).collect()
});

/// Appends `record` to `out` as one compact JSON object (no newline).
pub fn write(record: &Record, out: &mut Vec<u8>) {
    let output = record.output();
    let mut object = Object {
        out,
        columns: OUTPUTS[output].columns,
        keys: &KEYS[output],
        next: 0,
        empty: true,
    };
    object.out.push(b'{');
    record.values(&mut object);
    object.out.push(b'}');
}

struct Object<'a> {
    out: &'a mut Vec<u8>,
    columns: &'static [Column],
    keys: &'a [Box<[u8]>],
    next: usize,
    empty: bool,
}

impl Object<'_> {
    /// Writes the next column's key, or returns false when an absent value
    /// is left out.
    fn key(&mut self, present: bool) -> bool {
        let at = self.next;
        self.next += 1;
        if !present && self.columns[at].presence == Presence::Omitted {
            return false;
        }
        let first = std::mem::take(&mut self.empty);
        self.out
            .extend_from_slice(&self.keys[at][usize::from(first)..]);
        true
    }

    fn null(&mut self) {
        self.out.extend_from_slice(b"null");
    }

    fn number(&mut self, value: impl itoa::Integer) {
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn decimal(&mut self, value: i128, scale: u32) {
        self.out.push(b'"');
        self.out
            .extend_from_slice(scaled_digits(value, scale, &mut [0; 41]));
        self.out.push(b'"');
    }
}

/// Text is escaped as JSON requires: quotes, backslashes and control
/// characters (a rejected message's `raw` may hold any of them).
fn escaped(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    // Ids, symbols and accounts almost never hold such a byte: one pass to
    // see that, and one copy.
    if !text.bytes().any(|b| matches!(b, b'"' | b'\\' | 0..=0x1f)) {
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        return;
    }
    let mut plain = 0;
    for (i, byte) in text.bytes().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&text.as_bytes()[plain..i]);
        plain = i + 1;
        match escape {
            b"" => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
            escape => out.extend_from_slice(escape),
        }
    }
    out.extend_from_slice(&text.as_bytes()[plain..]);
    out.push(b'"');
}

/// Lets `Display` write into the JSON buffer.
struct Bytes<'a>(&'a mut Vec<u8>);

impl fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

impl Values for Object<'_> {
    fn text(&mut self, value: Option<&str>) {
        if self.key(value.is_some()) {
            match value {
                Some(text) => escaped(self.out, text),
                None => self.null(),
            }
        }
    }

    fn display(&mut self, value: Option<&dyn fmt::Display>) {
        if !self.key(value.is_some()) {
            return;
        }
        let Some(value) = value else {
            return self.null();
        };
        let start = self.out.len();
        self.out.push(b'"');
        let _ = write!(Bytes(self.out), "{value}");
        // Written text is the contract's words and ids, which need no
        // escaping; should one ever need it, escape it after all.
        let written = &self.out[start + 1..];
        if written.iter().any(|b| matches!(b, b'"' | b'\\' | 0..=0x1f)) {
            let text = String::from_utf8_lossy(written).into_owned();
            self.out.truncate(start);
            escaped(self.out, &text);
        } else {
            self.out.push(b'"');
        }
    }

    fn count(&mut self, value: Option<u64>) {
        if self.key(value.is_some()) {
            match value {
                Some(n) => self.number(n),
                None => self.null(),
            }
        }
    }

    fn version(&mut self, value: u32) {
        self.key(true);
        self.number(value);
    }

    fn price(&mut self, value: Option<Fixed>) {
        if self.key(value.is_some()) {
            match value {
                Some(p) => self.decimal(i128::from(p.0), SCALE),
                None => self.null(),
            }
        }
    }

    fn amount(&mut self, value: Wide) {
        self.key(true);
        self.decimal(value.0, SCALE);
    }

    fn notional(&mut self, value: i128) {
        self.key(true);
        self.decimal(value, NOTIONAL_SCALE);
    }

    fn time(&mut self, value: i64) {
        self.key(true);
        self.number(value);
    }
}
