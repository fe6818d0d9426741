//! A fake Redis server on loopback, for answers a real server here cannot give (the Redis of
//! the test machine is 7.0 or newer): an older server's errors, or malformed script replies.
//! Every command is answered by a closure of the test's, and recorded in the order received,
//! so that a test can assert what the client sent. Runs as tasks of the current tokio runtime.
//!
//! Limits: RESP2 only, and only commands sent as arrays of bulk strings (what clients send;
//! inline commands, as typed in telnet, are not understood). Nothing is stored: the closure
//! decides every answer (it may keep state of its own, behind a lock or atomics). The server
//! itself handles only `MULTI` / `EXEC` / `DISCARD` (per connection: the commands in between
//! are answered `QUEUED`, and their closure replies, computed as they are queued rather than
//! at `EXEC`, are sent as `EXEC`'s array), because their replies depend on the connection.
//! Malformed input (or a command of more than 65536 arguments or 16 MiB in one) closes its
//! connection, after the answers to the commands before it, and so does a [`Reply::Hangup`]
//! (the client sees a lost connection: how a test plays a connection lost mid-command; a
//! closure that panics drops its connection too). Other connections go on.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

use idem_runtime::{Fingerprint, Token};

/// The most arguments one command may have, and the longest argument in bytes: beyond, the
/// connection is closed (a fake for tests has no use for more).
const MAX_ARGS: usize = 1 << 16;
const MAX_ARG_BYTES: usize = 16 << 20;

/// One command as received: its arguments, the name first.
pub type Command = Vec<Vec<u8>>;

/// Locks, ignoring poisoning (a panicking test must not hide its first panic).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`, `+PONG`, `+QUEUED`: without line breaks.
    Simple(String),
    /// `-ERR syntax error`, `-NOSCRIPT …`: the error code first, without line breaks.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// A bulk string (any bytes).
    Bulk(Vec<u8>),
    /// The nil bulk string (`$-1`): a missing key, a Lua `false`.
    Nil,
    /// An array of replies.
    Array(Vec<Reply>),
    /// No answer: the connection is closed instead, after the answers to the commands before
    /// this one (also when queued in a transaction, or anywhere inside an [`Reply::Array`]).
    Hangup,
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple("OK".to_owned())
    }

    /// An error reply: `message` starts with its code (`ERR`, `NOSCRIPT`, …).
    pub fn error(message: &str) -> Reply {
        Reply::Error(message.to_owned())
    }

    fn hangs_up(&self) -> bool {
        match self {
            Reply::Hangup => true,
            Reply::Array(items) => items.iter().any(Reply::hangs_up),
            _ => false,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        // Simple strings and errors cannot hold a line break: it would end the reply early.
        let line = |s: &str| s.replace(['\r', '\n'], " ");
        match self {
            Reply::Simple(s) => out.extend_from_slice(format!("+{}\r\n", line(s)).as_bytes()),
            Reply::Error(s) => out.extend_from_slice(format!("-{}\r\n", line(s)).as_bytes()),
            Reply::Integer(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Reply::Bulk(b) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
            Reply::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    item.encode(out);
                }
            }
            // `serve` closes the connection instead of encoding a reply that hangs up.
            Reply::Hangup => {}
        }
    }
}

/// The command's name (its first argument), in upper case: `"SET"`, `"EVALSHA"`.
pub fn name(command: &[Vec<u8>]) -> String {
    command
        .first()
        .map(|n| String::from_utf8_lossy(n).to_ascii_uppercase())
        .unwrap_or_default()
}

/// An in-progress record as `RedisStore` writes it: `p`, the fingerprint, the token, the lease
/// in ms (u64, big-endian).
pub fn in_progress_record(fingerprint: &Fingerprint, token: Token, lease_ms: u64) -> Vec<u8> {
    let mut record = vec![b'p'];
    record.extend_from_slice(fingerprint.as_bytes());
    record.extend_from_slice(&token.to_bytes());
    record.extend_from_slice(&lease_ms.to_be_bytes());
    record
}

/// A completed record as `RedisStore` writes it: `c`, the fingerprint, the value's record bytes.
pub fn completed_record(fingerprint: &Fingerprint, value: &[u8]) -> Vec<u8> {
    let mut record = vec![b'c'];
    record.extend_from_slice(fingerprint.as_bytes());
    record.extend_from_slice(value);
    record
}

/// What a Redis 6.2 server answers to the commands a client sends while connecting, and an
/// `ERR unknown command` to anything else: the fallback of a test's closure.
///
/// `HELLO` is refused as by a server before Redis 6 (a RESP2 client never sends it; a RESP3
/// client then fails to connect, as it would there), `CLIENT SETINFO` as by one before
/// Redis 7.2 (clients ignore that answer); other `CLIENT` subcommands, `SELECT`, `AUTH` and
/// `READONLY` answer `+OK`, `PING` `+PONG`.
pub fn connection_reply(command: &[Vec<u8>]) -> Reply {
    let name = name(command);
    let sub = command
        .get(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_uppercase());
    match (name.as_str(), sub.as_deref()) {
        ("PING", _) => Reply::Simple("PONG".to_owned()),
        ("CLIENT", Some("SETINFO")) => Reply::error(
            "ERR Unknown subcommand or wrong number of arguments for 'SETINFO'. Try CLIENT HELP.",
        ),
        ("CLIENT" | "SELECT" | "AUTH" | "READONLY", _) => Reply::ok(),
        _ => Reply::error(&format!(
            "ERR unknown command `{name}`, with args beginning with: (fake Redis)"
        )),
    }
}

type Answer = dyn Fn(&[Vec<u8>]) -> Reply + Send + Sync;

/// A fake Redis server on `127.0.0.1:<port>`, answering with a closure. Dropping it closes the
/// port and every connection.
pub struct FakeRedis {
    port: u16,
    commands: Arc<Mutex<Vec<Command>>>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    listener: JoinHandle<()>,
}

impl FakeRedis {
    /// Listens on a free loopback port and answers every command (its arguments, the name
    /// first) with `answer`; let it fall back to [`connection_reply`] for what it does not
    /// handle itself.
    pub async fn start<F>(answer: F) -> FakeRedis
    where
        F: Fn(&[Vec<u8>]) -> Reply + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Redis port");
        let port = listener.local_addr().expect("local addr").port();
        let answer: Arc<Answer> = Arc::new(answer);
        let commands = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::spawn({
            let (commands, connections) = (commands.clone(), connections.clone());
            async move {
                while let Ok((socket, _)) = listener.accept().await {
                    let serve = serve(socket, answer.clone(), commands.clone());
                    lock(&connections).push(tokio::spawn(serve).abort_handle());
                }
            }
        });
        FakeRedis {
            port,
            commands,
            connections,
            listener,
        }
    }

    /// The local port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Every command received so far, on any connection, in the order received.
    pub fn commands(&self) -> Vec<Command> {
        lock(&self.commands).clone()
    }

    /// The names of the commands received so far ([`name`]), in the order received.
    pub fn names(&self) -> Vec<String> {
        lock(&self.commands).iter().map(|c| name(c)).collect()
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.listener.abort();
        for connection in lock(&self.connections).drain(..) {
            connection.abort();
        }
    }
}

/// Answers one connection's commands until it closes or sends something malformed.
async fn serve(mut socket: TcpStream, answer: Arc<Answer>, commands: Arc<Mutex<Vec<Command>>>) {
    let mut input = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    // The replies of the commands queued since `MULTI`, while in a transaction.
    let mut transaction: Option<Vec<Reply>> = None;
    loop {
        let mut out = Vec::new();
        let mut used = 0;
        // Malformed input, or a reply that hangs up: answer what came before, then close.
        let mut close = false;
        loop {
            let command = match parse_command(&input[used..]) {
                Ok(Some((command, len))) => {
                    used += len;
                    command
                }
                Ok(None) => break,
                Err(Malformed) => {
                    close = true;
                    break;
                }
            };
            lock(&commands).push(command.clone());
            let reply = match (name(&command).as_str(), transaction.as_mut()) {
                ("MULTI", None) => {
                    transaction = Some(Vec::new());
                    Reply::ok()
                }
                ("MULTI", Some(_)) => Reply::error("ERR MULTI calls can not be nested"),
                ("EXEC", Some(_)) => Reply::Array(transaction.take().unwrap_or_default()),
                ("EXEC", None) => Reply::error("ERR EXEC without MULTI"),
                ("DISCARD", Some(_)) => {
                    transaction = None;
                    Reply::ok()
                }
                ("DISCARD", None) => Reply::error("ERR DISCARD without MULTI"),
                (_, Some(queued)) => match answer(&command) {
                    reply if reply.hangs_up() => reply,
                    reply => {
                        queued.push(reply);
                        Reply::Simple("QUEUED".to_owned())
                    }
                },
                (_, None) => answer(&command),
            };
            if reply.hangs_up() {
                close = true;
                break;
            }
            reply.encode(&mut out);
        }
        input.drain(..used);
        if (!out.is_empty() && socket.write_all(&out).await.is_err()) || close {
            return;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => input.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Input that is not a RESP2 command.
struct Malformed;

/// The command at the start of `input` (`*<n>\r\n` then `n` × `$<len>\r\n<bytes>\r\n`) and its
/// length in bytes, or `None` while it is incomplete.
fn parse_command(input: &[u8]) -> Result<Option<(Command, usize)>, Malformed> {
    let Some((count, mut at)) = header(input, 0, b'*', MAX_ARGS)? else {
        return Ok(None);
    };
    if count == 0 {
        return Err(Malformed);
    }
    let mut args = Vec::with_capacity(count.min(16));
    for _ in 0..count {
        let Some((len, start)) = header(input, at, b'$', MAX_ARG_BYTES)? else {
            return Ok(None);
        };
        let end = start + len;
        match input.get(end..end + 2) {
            None => return Ok(None),
            Some(b"\r\n") => {}
            Some(_) => return Err(Malformed),
        }
        args.push(input[start..end].to_vec());
        at = end + 2;
    }
    Ok(Some((args, at)))
}

/// The line `<kind><decimal, at most max>\r\n` at `at`: the number and where the next line
/// starts, or `None` while the line is incomplete.
fn header(
    input: &[u8],
    at: usize,
    kind: u8,
    max: usize,
) -> Result<Option<(usize, usize)>, Malformed> {
    let line = &input[at.min(input.len())..];
    let Some(&first) = line.first() else {
        return Ok(None);
    };
    if first != kind {
        return Err(Malformed);
    }
    let Some(end) = line.windows(2).position(|w| w == b"\r\n") else {
        // A number of at most 20 digits: a longer line will not end well.
        return if line.len() > 24 {
            Err(Malformed)
        } else {
            Ok(None)
        };
    };
    std::str::from_utf8(&line[1..end])
        .ok()
        .filter(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<usize>().ok())
        .filter(|n| *n <= max)
        .map(|n| Some((n, at + end + 2)))
        .ok_or(Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(args: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn parses_whole_commands_and_waits_for_the_rest() {
        let bytes = packed(&[b"SET", b"k", b"a\r\nb"]);
        for cut in 0..bytes.len() {
            assert!(
                matches!(parse_command(&bytes[..cut]), Ok(None)),
                "incomplete at {cut}"
            );
        }
        let mut two = bytes.clone();
        two.extend_from_slice(&packed(&[b"PING"]));
        let Ok(Some((command, len))) = parse_command(&two) else {
            panic!("a whole command")
        };
        assert_eq!(
            command,
            [b"SET".to_vec(), b"k".to_vec(), b"a\r\nb".to_vec()]
        );
        assert_eq!(len, bytes.len());
    }

    #[test]
    fn refuses_what_is_not_a_command() {
        for input in [
            &b"PING\r\n"[..],
            b"*0\r\n",
            b"*-1\r\n",
            b"*1\r\n:1\r\n",
            b"*1\r\n$-1\r\n",
            b"*1\r\n$2\r\nabc\r\n",
            b"*+1\r\n",
            b"*1x\r\n",
            b"*99999999999999999999999999\r\n",
            b"*1\r\n$999999999\r\n",
            b"*1111111111111111111111111111111",
        ] {
            assert!(
                matches!(parse_command(input), Err(Malformed)),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn encodes_replies() {
        let mut out = Vec::new();
        Reply::Array(vec![
            Reply::ok(),
            Reply::error("ERR no\r\nway"),
            Reply::Integer(-7),
            Reply::Bulk(b"x\r\ny".to_vec()),
            Reply::Nil,
            Reply::Array(vec![]),
        ])
        .encode(&mut out);
        assert_eq!(
            out,
            b"*6\r\n+OK\r\n-ERR no  way\r\n:-7\r\n$4\r\nx\r\ny\r\n$-1\r\n*0\r\n"
        );
    }

    /// Writes `bytes` on a new connection and reads until the server closes it or `expected`
    /// bytes came.
    async fn exchange(fake: &FakeRedis, bytes: &[u8], expected: usize) -> Vec<u8> {
        let mut socket = TcpStream::connect(("127.0.0.1", fake.port()))
            .await
            .expect("connect");
        socket.write_all(bytes).await.expect("write");
        let mut answer = Vec::new();
        let mut chunk = [0u8; 1024];
        while answer.len() < expected {
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
        answer
    }

    #[tokio::test]
    async fn answers_and_records_commands_and_transactions() {
        let fake = FakeRedis::start(|command| match name(command).as_str() {
            "GET" => Reply::Bulk(command[1].clone()),
            _ => connection_reply(command),
        })
        .await;
        let mut input = packed(&[b"ping"]);
        for command in [
            &[&b"MULTI"[..]][..],
            &[b"GET", b"k"],
            &[b"NOPE"],
            &[b"EXEC"],
        ] {
            input.extend_from_slice(&packed(command));
        }
        let expected =
            b"+PONG\r\n+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n$1\r\nk\r\n-ERR unknown command";
        let answer = exchange(&fake, &input, expected.len()).await;
        assert_eq!(
            String::from_utf8_lossy(&answer[..expected.len().min(answer.len())]),
            String::from_utf8_lossy(expected)
        );
        assert_eq!(fake.names(), ["PING", "MULTI", "GET", "NOPE", "EXEC"]);
    }

    #[tokio::test]
    async fn malformed_input_closes_only_its_connection() {
        let fake = FakeRedis::start(connection_reply).await;
        // A command answered, then garbage: the connection closes after the answer.
        let mut input = packed(&[b"PING"]);
        input.extend_from_slice(b"*1\r\n$x\r\n");
        assert_eq!(exchange(&fake, &input, usize::MAX).await, b"+PONG\r\n");
        assert_eq!(exchange(&fake, b"GET k\r\n", usize::MAX).await, b"");
        // The server still answers other connections.
        assert_eq!(exchange(&fake, &packed(&[b"PING"]), 7).await, b"+PONG\r\n");
        assert_eq!(fake.names(), ["PING", "PING"]);
    }

    #[tokio::test]
    async fn a_hangup_closes_its_connection_after_the_answers_before_it() {
        let fake = FakeRedis::start(|command| match name(command).as_str() {
            "QUIT" => Reply::Hangup,
            "GET" => Reply::Array(vec![Reply::Nil, Reply::Hangup]),
            _ => connection_reply(command),
        })
        .await;
        let mut input = packed(&[b"PING"]);
        input.extend_from_slice(&packed(&[b"QUIT"]));
        input.extend_from_slice(&packed(&[b"PING"]));
        assert_eq!(exchange(&fake, &input, usize::MAX).await, b"+PONG\r\n");
        // Inside an array, and queued in a transaction: closed at once all the same.
        assert_eq!(
            exchange(&fake, &packed(&[b"GET", b"k"]), usize::MAX).await,
            b""
        );
        let mut input = packed(&[b"MULTI"]);
        input.extend_from_slice(&packed(&[b"QUIT"]));
        input.extend_from_slice(&packed(&[b"EXEC"]));
        assert_eq!(exchange(&fake, &input, usize::MAX).await, b"+OK\r\n");
        assert_eq!(fake.names(), ["PING", "QUIT", "GET", "MULTI", "QUIT"]);
    }
}
