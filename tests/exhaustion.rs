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
