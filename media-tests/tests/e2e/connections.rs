//! An exposed server under idle and trickling connections: with 2,000 of them open (half idle,
//! half sending a header byte a second) a real client is still answered at once, and the server
//! closes both kinds once their header deadline passes. An HTTP/2 connection kept up by pings but
//! sending no request is closed at the idle deadline.

use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use framelog_media_tests::Server;
use framelog_sdk::{Client, ClientConfig, NewStream};

const IDLE: usize = 1_000;
const TRICKLING: usize = 1_000;
const HEADER_DEADLINE_SECS: u64 = 3;

/// The test process needs 2,000 sockets too.
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit).expect("raise the open files limit");
}

/// Whether the server has closed `socket` (a read returns end of stream or an error).
fn closed(socket: &mut TcpStream) -> bool {
    socket.set_read_timeout(Some(Duration::from_millis(5))).expect("timeout");
    let mut byte = [0u8; 64];
    match socket.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => true, // an error answer (408) before closing also ends the connection
        Err(error) => !matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_are_answered_while_two_thousand_idle_and_trickling_connections_are_open() {
    raise_open_files_limit();
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("framelog.toml");
    std::fs::write(&config, format!("[limits]\nheader_read_timeout_secs = {HEADER_DEADLINE_SECS}\n")).expect("config");
    let server = Server::start_with_args(vec![OsString::from("--config"), config.into()]).expect("server");
    let address = server.url().trim_start_matches("http://").to_string();

    let mut idle: Vec<TcpStream> = (0..IDLE).map(|_| TcpStream::connect(&address).expect("connect")).collect();
    let mut trickling: Vec<TcpStream> =
        (0..TRICKLING).map(|_| TcpStream::connect(&address).expect("connect")).collect();
    let request_line = b"GET /listStreams HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    let started = Instant::now();

    let client = Client::new(ClientConfig::new(server.url()));
    let mut worst = Duration::ZERO;
    for second in 0..HEADER_DEADLINE_SECS + 2 {
        for socket in &mut trickling {
            // Write errors mean the server already closed it; that is checked below.
            let _ = socket.write_all(&request_line[second as usize..second as usize + 1]);
        }
        let asked = Instant::now();
        let name = format!("busy-{second}");
        client.ensure_stream(&NewStream::named(&name)).await.expect("a real client is answered");
        worst = worst.max(asked.elapsed());
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(asked.elapsed())).await;
    }
    assert!(worst < Duration::from_secs(1), "slowest real call took {worst:?} with 2,000 connections open");
    assert!(started.elapsed() > Duration::from_secs(HEADER_DEADLINE_SECS));

    let idle_closed = idle.iter_mut().map(closed).filter(|c| *c).count();
    let trickling_closed = trickling.iter_mut().map(closed).filter(|c| *c).count();
    assert_eq!((idle_closed, trickling_closed), (IDLE, TRICKLING), "every idle and trickling connection is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_kept_up_by_pings_is_closed_once_idle() {
    const IDLE_SECS: u64 = 2;
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("framelog.toml");
    std::fs::write(&config, format!("[limits]\nidle_timeout_secs = {IDLE_SECS}\n")).expect("config");
    let server = Server::start_with_args(vec![OsString::from("--config"), config.into()]).expect("server");
    let address = server.url().trim_start_matches("http://").to_string();
    let socket = tokio::net::TcpStream::connect(&address).await.expect("connect");
    let mut builder = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
    // Pings every 300 ms, answered by the server: the connection is alive, only idle.
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(300))
        .keep_alive_while_idle(true);
    let (mut sender, connection) =
        builder.handshake(hyper_util::rt::TokioIo::new(socket)).await.expect("HTTP/2 with prior knowledge");
    let ended = tokio::spawn(connection);
    let request = hyper::Request::post(format!("http://{address}/listStreams"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .expect("request");
    let response = sender.send_request(request).await.expect("answered over HTTP/2");
    assert_eq!(response.status(), 200);
    let answered = Instant::now();
    drop(response);

    let outcome = tokio::time::timeout(Duration::from_secs(IDLE_SECS + 5), ended).await;

    let idle_for = answered.elapsed();
    assert!(outcome.is_ok(), "the server kept an idle HTTP/2 connection for {idle_for:?}");
    // The server's idle clock starts when it finished the answer, a little before the client
    // held it (CI once saw the close 11 ms short of 2 s, counted from here).
    let margin = Duration::from_millis(200);
    assert!(idle_for + margin >= Duration::from_secs(IDLE_SECS), "closed after {idle_for:?}, before the idle deadline");
}
