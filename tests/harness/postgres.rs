//! A database of its own per test on the machine's PostgreSQL (127.0.0.1:5432, user
//! `postgres`, trust auth), dropped with the guard; and a TCP relay in front of PostgreSQL
//! that a test can cut, as if the database went away.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

/// Where the tests find PostgreSQL.
pub const HOST: &str = "127.0.0.1";
pub const PORT: u16 = 5432;

const HOW_TO_START: &str = "PostgreSQL must accept `postgres` on 127.0.0.1:5432 without a \
    password: install and start it (apt-get install -y postgresql; pg_ctlcluster 15 main start \
    or service postgresql start) and allow `host all postgres 127.0.0.1/32 trust` in \
    pg_hba.conf; .ci/run does all of this";

async fn connect(url: &str) -> Client {
    let (client, connection) =
        tokio::time::timeout(Duration::from_secs(5), tokio_postgres::connect(url, NoTls))
            .await
            .unwrap_or_else(|_| panic!("PostgreSQL did not answer in 5 s. {HOW_TO_START}"))
            .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL ({e}). {HOW_TO_START}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn admin_url() -> String {
    format!("postgres://postgres@{HOST}:{PORT}/postgres")
}

/// A database created for one test.
pub struct TestDatabase {
    pub name: String,
}

impl TestDatabase {
    /// Creates `billing_test_<pid>_<n>_<ms>`; panics saying how to start PostgreSQL when it is
    /// not reachable.
    pub async fn create() -> TestDatabase {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let name = format!(
            "billing_test_{}_{}_{ms}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let admin = connect(&admin_url()).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        TestDatabase { name }
    }

    /// `postgres://postgres@127.0.0.1:5432/<name>`.
    pub fn url(&self) -> String {
        self.url_at(PORT)
    }

    /// The same database through another port (a relay).
    pub fn url_at(&self, port: u16) -> String {
        format!("postgres://postgres@{HOST}:{port}/{}", self.name)
    }

    /// A plaintext client of the test database.
    pub async fn client(&self) -> Client {
        connect(&self.url()).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime: the async client needs one of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let admin = connect(&admin_url()).await;
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            });
        })
        .join();
    }
}

/// A TCP relay to PostgreSQL on a fixed loopback port. `cut` closes every relayed connection
/// and stops listening; `restore` listens again on the same port.
pub struct Relay {
    pub port: u16,
    state: Arc<Mutex<Option<JoinHandle<()>>>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    /// Starts relaying on a free port.
    pub async fn start() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let relay = Relay {
            port,
            state: Arc::default(),
            connections: Arc::default(),
        };
        relay.serve(listener);
        relay
    }

    fn serve(&self, listener: TcpListener) {
        let connections = self.connections.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let pipe = tokio::spawn(async move {
                    let upstream: SocketAddr = format!("{HOST}:{PORT}").parse().unwrap();
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut client = client;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                connections.lock().unwrap().push(pipe);
            }
        });
        *self.state.lock().unwrap() = Some(accept);
    }

    /// The database goes away: open connections drop, new ones are refused.
    pub fn cut(&self) {
        if let Some(accept) = self.state.lock().unwrap().take() {
            accept.abort();
        }
        for pipe in self.connections.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }

    /// The database comes back on the same port.
    pub async fn restore(&self) {
        for _ in 0..50 {
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", self.port)).await {
                self.serve(listener);
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("could not listen again on {}", self.port);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}
