//! A streaming JSON writer that produces byte-for-byte what iproute2's `lib/json_writer.c`
//! produces, compact or pretty (`-p`: four-space indentation, `[ a,b ]` arrays).

/// The writer. Call [`JsonWriter::finish`] for the text (it appends the final newline).
pub struct JsonWriter {
    out: String,
    depth: usize,
    pretty: bool,
    /// `sep != '\0'` in the C code: the current collection already has an element.
    sep: bool,
}

impl JsonWriter {
    /// A new writer.
    pub fn new(pretty: bool) -> Self {
        JsonWriter {
            out: String::new(),
            depth: 0,
            pretty,
            sep: false,
        }
    }

    fn eol(&mut self) {
        if self.pretty {
            self.out.push('\n');
            for _ in 0..self.depth {
                self.out.push_str("    ");
            }
        }
    }

    fn eor(&mut self) {
        if self.sep {
            self.out.push(',');
        }
        self.sep = true;
    }

    fn puts(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            match c {
                '\t' => self.out.push_str("\\t"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\x0c' => self.out.push_str("\\f"),
                '\x08' => self.out.push_str("\\b"),
                '\\' => self.out.push_str("\\\\"),
                '"' => self.out.push_str("\\\""),
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    fn begin(&mut self, c: char) {
        self.eor();
        self.out.push(c);
        self.depth += 1;
        self.sep = false;
    }

    fn end(&mut self, c: char) {
        self.depth -= 1;
        if self.sep {
            self.eol();
        }
        self.out.push(c);
        self.sep = true;
    }

    /// A property name (`jsonw_name`).
    pub fn name(&mut self, name: &str) {
        self.eor();
        self.eol();
        self.sep = false;
        self.puts(name);
        self.out.push(':');
        if self.pretty {
            self.out.push(' ');
        }
    }

    /// `{`, after an optional name.
    pub fn start_object(&mut self, name: Option<&str>) {
        if let Some(n) = name {
            self.name(n);
        }
        self.begin('{');
    }

    /// `}`.
    pub fn end_object(&mut self) {
        self.end('}');
    }

    /// `[`, after an optional name.
    pub fn start_array(&mut self, name: Option<&str>) {
        if let Some(n) = name {
            self.name(n);
        }
        self.begin('[');
        if self.pretty {
            self.out.push(' ');
        }
    }

    /// `]`.
    pub fn end_array(&mut self) {
        if self.pretty && self.sep {
            self.out.push(' ');
        }
        self.sep = false;
        self.end(']');
    }

    /// A string value, after an optional name.
    pub fn string(&mut self, name: Option<&str>, v: &str) {
        if let Some(n) = name {
            self.name(n);
        }
        self.eor();
        self.puts(v);
    }

    /// A number (any integer type) or other raw token, after a name.
    pub fn raw(&mut self, name: &str, v: impl std::fmt::Display) {
        self.name(name);
        self.eor();
        self.out.push_str(&v.to_string());
    }

    /// The text, with the newline `jsonw_destroy` writes.
    pub fn finish(mut self) -> String {
        self.out.push('\n');
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pretty: bool) -> String {
        let mut w = JsonWriter::new(pretty);
        w.start_array(None);
        w.start_object(None);
        w.raw("ifindex", 4);
        w.start_array(Some("flags"));
        w.string(None, "BROADCAST");
        w.string(None, "MULTICAST");
        w.end_array();
        w.start_object(Some("linkinfo"));
        w.string(Some("info_kind"), "macvlan");
        w.start_object(Some("info_data"));
        w.end_object();
        w.end_object();
        w.end_object();
        w.end_array();
        w.finish()
    }

    #[test]
    fn compact_and_pretty_like_json_writer_c() {
        assert_eq!(
            sample(false),
            "[{\"ifindex\":4,\"flags\":[\"BROADCAST\",\"MULTICAST\"],\"linkinfo\":{\"info_kind\":\"macvlan\",\"info_data\":{}}}]\n"
        );
        assert_eq!(
            sample(true),
            "[ {\n        \"ifindex\": 4,\n        \"flags\": [ \"BROADCAST\",\"MULTICAST\" ],\n        \"linkinfo\": {\n            \"info_kind\": \"macvlan\",\n            \"info_data\": {}\n        }\n    } ]\n"
        );
    }

    #[test]
    fn empty_array() {
        let mut w = JsonWriter::new(true);
        w.start_array(None);
        w.end_array();
        assert_eq!(w.finish(), "[ ]\n");
        let mut w = JsonWriter::new(false);
        w.start_array(None);
        w.end_array();
        assert_eq!(w.finish(), "[]\n");
    }
}
