//! A minimal PostgreSQL client (protocol 3.0, cleartext password, simple
//! queries) over a plain socket: enough to hold one session open across
//! statements, which `psql -c` cannot, and to send what a hostile client
//! would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Result, bail};

/// One connection.
pub struct PgClient {
    stream: TcpStream,
}

/// What a simple query answered.
#[derive(Debug, Default)]
pub struct Answer {
    /// Rows, each column as text (`None` for null).
    pub rows: Vec<Vec<Option<String>>>,
    /// The error, as `(severity, code, message)`, if one came.
    pub error: Option<(String, String, String)>,
    /// True when the server closed the connection.
    pub closed: bool,
}

impl PgClient {
    /// Connects and signs in with `password` (an API token).
    pub fn connect(port: u16, password: &str) -> Result<(Self, Answer)> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut client = Self { stream };
        let mut body = Vec::new();
        body.extend_from_slice(&196_608_i32.to_be_bytes());
        for (key, value) in [("user", "analyst"), ("database", "fathom")] {
            body.extend_from_slice(key.as_bytes());
            body.push(0);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut startup = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        startup.extend_from_slice(&body);
        client.stream.write_all(&startup)?;
        let mut answer = Answer::default();
        loop {
            let Some((tag, payload)) = client.read_message()? else {
                answer.closed = true;
                return Ok((client, answer));
            };
            match tag {
                b'R' if payload.get(..4) == Some(&3_i32.to_be_bytes()[..]) => {
                    let mut password_body = password.as_bytes().to_vec();
                    password_body.push(0);
                    client.send(b'p', &password_body)?;
                }
                b'E' => answer.error = Some(error_fields(&payload)),
                b'Z' => return Ok((client, answer)),
                _ => {}
            }
        }
    }

    fn send(&mut self, tag: u8, body: &[u8]) -> Result<()> {
        let mut message = vec![tag];
        message.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        message.extend_from_slice(body);
        self.stream.write_all(&message)?;
        Ok(())
    }

    /// The next message, or `None` when the server closed the socket.
    fn read_message(&mut self) -> Result<Option<(u8, Vec<u8>)>> {
        let mut header = [0_u8; 5];
        match self.stream.read_exact(&mut header) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
        let length = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        if length < 4 {
            bail!("bad message length {length}");
        }
        let mut payload = vec![0_u8; length as usize - 4];
        self.stream.read_exact(&mut payload)?;
        Ok(Some((header[0], payload)))
    }

    /// Runs `sql` with the simple query protocol.
    pub fn query(&mut self, sql: &str) -> Result<Answer> {
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        let mut answer = Answer::default();
        if self.send(b'Q', &body).is_err() {
            answer.closed = true;
            return Ok(answer);
        }
        loop {
            let Some((tag, payload)) = self.read_message()? else {
                answer.closed = true;
                return Ok(answer);
            };
            match tag {
                b'D' => answer.rows.push(data_row(&payload)),
                b'E' => answer.error = Some(error_fields(&payload)),
                b'Z' => return Ok(answer),
                _ => {}
            }
        }
    }
}

fn error_fields(payload: &[u8]) -> (String, String, String) {
    let (mut severity, mut code, mut message) = (String::new(), String::new(), String::new());
    for field in payload.split(|b| *b == 0) {
        let Some((kind, text)) = field.split_first() else {
            continue;
        };
        let text = String::from_utf8_lossy(text).into_owned();
        match kind {
            b'S' => severity = text,
            b'C' => code = text,
            b'M' => message = text,
            _ => {}
        }
    }
    (severity, code, message)
}

fn data_row(payload: &[u8]) -> Vec<Option<String>> {
    let mut row = Vec::new();
    let count = payload
        .get(..2)
        .map_or(0, |b| i16::from_be_bytes([b[0], b[1]]));
    let mut at = 2;
    for _ in 0..count {
        let Some(length) = payload.get(at..at + 4) else {
            break;
        };
        let length = i32::from_be_bytes([length[0], length[1], length[2], length[3]]);
        at += 4;
        if length < 0 {
            row.push(None);
            continue;
        }
        let end = at + length as usize;
        row.push(
            payload
                .get(at..end)
                .map(|b| String::from_utf8_lossy(b).into_owned()),
        );
        at = end;
    }
    row
}
