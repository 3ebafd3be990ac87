//! Clients that hold connections without finishing a request (slowloris, idle sockets) are
//! disconnected, open connections stay capped, and other clients are served meanwhile.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::server::Server;

fn address(server: &Server) -> String {
    server.url.trim_start_matches("http://").to_string()
}

/// Whether the server closed the connection within `within`.
fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).expect("timeout");
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn slow_and_idle_clients_are_disconnected_while_others_are_served() {
    let server = Server::start_with(&common::tiny_model(), &["--header-timeout-secs", "2"]);
    server.wait_ready();
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|i| {
            let mut stream = TcpStream::connect(address(&server)).expect("connect");
            if i % 2 == 0 {
                // Half a request's headers, then nothing: a slowloris client.
                stream.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").expect("partial headers");
            }
            stream
        })
        .collect();
    for _ in 0..20 {
        let asked = Instant::now();
        assert_eq!(server.get("/health").status(), 200);
        assert!(asked.elapsed() < Duration::from_secs(1), "a normal request waited {:?}", asked.elapsed());
    }
    for (i, stream) in slow.iter_mut().enumerate() {
        assert!(closed_by_server(stream, Duration::from_secs(6)), "connection {i} is still open after {:?}", started.elapsed());
    }
}

#[test]
fn open_connections_are_capped_and_the_capped_ones_are_served_in_turn() {
    let server = Server::start_with(&common::tiny_model(), &["--max-connections", "50", "--header-timeout-secs", "3"]);
    server.wait_ready();
    std::thread::sleep(Duration::from_millis(300));
    let baseline = open_descriptors(server.pid());
    let idle: Vec<TcpStream> = (0..400).map(|_| TcpStream::connect(address(&server)).expect("connect")).collect();
    std::thread::sleep(Duration::from_millis(500));
    let held = open_descriptors(server.pid());
    assert!(held <= baseline + 55, "{held} descriptors open with 400 idle clients (baseline {baseline}, cap 50)");
    // A client queued behind them is answered once the idle ones ahead of it time out, in
    // turns of 50 every 3 s (about 24 s here), not never.
    let asked = Instant::now();
    assert_eq!(server.get("/health").status(), 200);
    assert!(asked.elapsed() < Duration::from_secs(60), "waited {:?}", asked.elapsed());
    drop(idle);
}

#[test]
fn an_upload_of_a_hundred_thousand_tiny_parts_is_refused_at_the_limit() {
    let server = Server::start_with(&common::tiny_model(), &["--max-upload-parts", "100"]);
    server.wait_ready();
    let boundary = "XBOUNDARYX";
    let mut body = String::new();
    for i in 0..100_000 {
        body.push_str(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"f{i}.jpg\"\r\n\r\nx\r\n"));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    let started = Instant::now();
    let response = common::server::client()
        .post(format!("{}/ingest/upload", server.url))
        .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
        .header("X-Requested-With", "visionquery")
        .body(body)
        .send()
        .expect("upload");
    assert_eq!(response.status(), 413);
    let error: serde_json::Value = response.json().expect("JSON error");
    assert_eq!(error["error"]["code"], "too_many_parts", "{error}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(server.get("/health").status(), 200);
}

#[test]
fn deeply_nested_json_is_a_clear_error() {
    let server = Server::start();
    server.wait_ready();
    for body in [
        "[".repeat(50_000) + &"]".repeat(50_000),
        format!("{{\"query\":\"a\",\"filter\":{}1{}}}", "{\"x\":".repeat(5_000), "}".repeat(5_000)),
    ] {
        let response = common::server::client()
            .post(format!("{}/search", server.url))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .expect("search");
        let status = response.status().as_u16();
        let error: serde_json::Value = response.json().expect("JSON error");
        assert!([400, 413, 422].contains(&status), "{status} {error}");
        assert!(error["error"]["code"].is_string(), "{error}");
    }
}
