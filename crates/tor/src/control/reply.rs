//! The wire format of tor's control protocol: reply lines, data blocks,
//! dot-stuffing and keyword arguments (control-spec sections 2.3 – 2.5).

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One reply (or one asynchronous event) from tor: every line up to and
/// including the final `CODE<SP>` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status code of the final line (250, 552, 650, ...).
    pub code: u16,
    /// The lines in order; the last one is the final `CODE<SP>` line.
    pub lines: Vec<ReplyLine>,
}

/// One line of a reply, with the data block that followed it for `CODE+` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyLine {
    /// The text after `CODE` and the separator character.
    pub text: String,
    /// For a `CODE+` line: the data block, dot-unstuffed, each line ending in `\n`.
    pub data: Option<String>,
}

impl Reply {
    /// True for 2xx replies.
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// The text of the first line (the event line for events).
    pub fn first_text(&self) -> &str {
        self.lines.first().map(|l| l.text.as_str()).unwrap_or("")
    }

    /// All line texts joined with " / ", for error messages.
    pub fn message(&self) -> String {
        self.lines
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join(" / ")
    }
}

/// Why reading a reply failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The socket failed.
    Io(std::io::Error),
    /// The connection ended; `partial` is true when it ended inside a reply.
    Eof { partial: bool },
    /// A line did not follow the grammar.
    Malformed(String),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "read error: {e}"),
            ReadError::Eof { partial: false } => write!(f, "connection closed by tor"),
            ReadError::Eof { partial: true } => write!(f, "connection closed inside a reply"),
            ReadError::Malformed(m) => write!(f, "malformed reply line: {m}"),
        }
    }
}

/// Reads one raw line, without its CRLF (or LF). `None` at end of stream.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Option<String>, ReadError> {
    let mut buf = Vec::new();
    let n = r.read_until(b'\n', &mut buf).await.map_err(ReadError::Io)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    } else {
        // A line cut off by EOF is never a complete line.
        return Err(ReadError::Eof { partial: true });
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// Reads one complete reply (several lines, data blocks included).
pub(crate) async fn read_reply<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Reply, ReadError> {
    let mut lines = Vec::new();
    loop {
        let Some(line) = read_line(r).await? else {
            return Err(ReadError::Eof {
                partial: !lines.is_empty(),
            });
        };
        if line.len() < 4 || !line.is_char_boundary(3) || !line.is_char_boundary(4) {
            return Err(ReadError::Malformed(line));
        }
        let code: u16 = line[..3]
            .parse()
            .map_err(|_| ReadError::Malformed(line.clone()))?;
        let sep = line.as_bytes()[3];
        let text = line[4..].to_string();
        match sep {
            b' ' => {
                lines.push(ReplyLine { text, data: None });
                return Ok(Reply { code, lines });
            }
            b'-' => lines.push(ReplyLine { text, data: None }),
            b'+' => {
                let data = read_data_block(r).await?;
                lines.push(ReplyLine {
                    text,
                    data: Some(data),
                });
            }
            _ => return Err(ReadError::Malformed(line)),
        }
    }
}

/// Reads a data block up to its terminating `.` line and undoes dot-stuffing.
async fn read_data_block<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<String, ReadError> {
    let mut out = String::new();
    loop {
        let Some(line) = read_line(r).await? else {
            return Err(ReadError::Eof { partial: true });
        };
        if line == "." {
            return Ok(out);
        }
        let line = line.strip_prefix('.').unwrap_or(&line);
        out.push_str(line);
        out.push('\n');
    }
}

/// Encodes `body` as a data block: CRLF line endings, every line starting
/// with `.` doubled, terminated by `.\r\n`.
pub fn dot_stuff(body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 16);
    for line in body.lines() {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out
}

/// One argument of a reply or event line: `KEY=VALUE`, `KEY="quoted"` or a
/// positional word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// The key, for `KEY=VALUE` arguments.
    pub key: Option<String>,
    /// The value (unquoted and unescaped), or the positional word.
    pub value: String,
}

/// Splits a reply line into arguments, honouring quoted strings with
/// backslash escapes (`\"`, `\\`, `\n`, `\t`, `\r`).
pub fn parse_args(text: &str) -> Vec<Arg> {
    let mut args = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return args;
        }
        let mut word = String::new();
        let mut key = None;
        while let Some(&c) = chars.peek() {
            if c == ' ' {
                break;
            }
            chars.next();
            if c == '=' && key.is_none() {
                key = Some(std::mem::take(&mut word));
                if chars.peek() == Some(&'"') {
                    chars.next();
                    word = read_quoted(&mut chars);
                    break;
                }
            } else {
                word.push(c);
            }
        }
        args.push(Arg { key, value: word });
    }
}

fn read_quoted(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> String {
    let mut out = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    out
}

/// Quotes a value for SETCONF and similar commands.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Looks up the value of `KEY=` among the arguments.
pub fn arg<'a>(args: &'a [Arg], key: &str) -> Option<&'a str> {
    args.iter()
        .find(|a| a.key.as_deref() == Some(key))
        .map(|a| a.value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(wire: &str) -> Result<Reply, ReadError> {
        let mut r = tokio::io::BufReader::new(wire.as_bytes());
        read_reply(&mut r).await
    }

    #[tokio::test]
    async fn single_and_multi_line() {
        let r = parse("250 OK\r\n").await.unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.first_text(), "OK");
        let r = parse("250-version=0.4.9.11\r\n250 OK\r\n").await.unwrap();
        assert_eq!(r.lines.len(), 2);
        assert_eq!(r.lines[0].text, "version=0.4.9.11");
    }

    #[tokio::test]
    async fn data_block_is_unstuffed() {
        let wire = "250+ns/all=\r\nr a\r\n..dot line\r\n.\r\n250 OK\r\n";
        let r = parse(wire).await.unwrap();
        assert_eq!(r.lines[0].data.as_deref(), Some("r a\n.dot line\n"));
        assert_eq!(r.lines[1].text, "OK");
    }

    #[tokio::test]
    async fn eof_and_garbage() {
        assert!(matches!(
            parse("").await,
            Err(ReadError::Eof { partial: false })
        ));
        assert!(matches!(
            parse("250-a\r\n").await,
            Err(ReadError::Eof { partial: true })
        ));
        assert!(matches!(
            parse("25\r\n").await,
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(
            parse("250*x\r\n").await,
            Err(ReadError::Malformed(_))
        ));
    }

    #[test]
    fn stuffing_round_trip_shape() {
        assert_eq!(dot_stuff("a\n.b\n..c\n"), "a\r\n..b\r\n...c\r\n.\r\n");
        assert_eq!(dot_stuff("x\r\ny"), "x\r\ny\r\n.\r\n");
        assert_eq!(dot_stuff(""), ".\r\n");
    }

    #[test]
    fn args_with_quotes() {
        let a = parse_args(r#"AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE="/var/a \"b\"\\c""#);
        assert_eq!(a[0].value, "AUTH");
        assert_eq!(arg(&a, "METHODS"), Some("COOKIE,SAFECOOKIE"));
        assert_eq!(arg(&a, "COOKIEFILE"), Some(r#"/var/a "b"\c"#));
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
