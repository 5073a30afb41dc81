//! A gitserver address that misbehaves at the HTTP level, on a real loopback socket: the
//! faults a dev gitserver cannot produce because its HTTP stack is correct.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// How the server misbehaves, on every request.
#[derive(Copy, Clone, Debug)]
pub enum Fault {
    /// Accepts the connection, reads the request, never answers (a pod stuck on a slow disk).
    Hang,
    /// Promises a body with `Content-Length` and closes the connection halfway through its
    /// JSON.
    CutMidJson,
    /// Streams a valid-looking JSON array without `Content-Length` (connection-delimited)
    /// until the client gives up: larger than any size cap.
    EndlessNoLength,
}

/// A listener on `127.0.0.1:0` serving `fault` until dropped.
pub struct HostileShard {
    addr: String,
    task: tokio::task::JoinHandle<()>,
}

impl HostileShard {
    pub async fn start(fault: Fault) -> HostileShard {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding a loopback port");
        let addr = listener.local_addr().expect("a bound address").to_string();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, fault));
            }
        });
        HostileShard { addr, task }
    }

    pub fn addr(&self) -> String {
        self.addr.clone()
    }
}

impl Drop for HostileShard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, fault: Fault) {
    // Read the request head (and whatever body came with it); the answer does not depend on it.
    let mut buf = vec![0u8; 64 * 1024];
    let _ = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await;
    match fault {
        Fault::Hang => {
            // Hold the connection open without a byte of answer until the client leaves.
            let _ = stream.read(&mut buf).await;
            std::future::pending::<()>().await;
        }
        Fault::CutMidJson => {
            let body = br#"["github.com/hostile/one", "github.com/hostile/tw"#;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len() + 40
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body).await;
            let _ = stream.shutdown().await;
        }
        Fault::EndlessNoLength => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n[";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = "\"github.com/hostile/endless-repository-name-padding-padding-padding\",".repeat(1024);
            // Until the client closes; bounded anyway so a broken client cannot make this spin
            // forever (4 GiB).
            for _ in 0..60_000 {
                if stream.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
}
