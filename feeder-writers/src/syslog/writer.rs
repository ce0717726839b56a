//! The writer: connections, sending a batch, and confirming it.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use feeder_core::error::Rejection;
use feeder_core::model::Event;
use feeder_core::writer::Writer;
use feeder_core::WriteError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use super::config::{local_hostname, Protocol, SyslogOptions};
use super::frame::{self, Header};

/// The largest UDP payload over IPv4 (65535 less the IP and UDP headers): a longer message
/// cannot be sent as one datagram.
pub const UDP_MAX_MESSAGE: usize = 65_507;

/// Sends events to a syslog server as RFC 5424 messages whose MSG is the event's JSON line.
///
/// Over TCP and TLS each batch travels on a connection of its own: the writer connects,
/// sends the batch's octet-counted messages, closes its sending side and waits for the
/// server to close in turn. A server closes only once it has read everything up to that
/// end, so that close is the one confirmation syslog gives; the batch counts as written
/// only then. Any failure before it (refused, reset, a close before the end was read, a
/// timeout) fails the batch with a retriable error, and the runner sends it again whole:
/// messages may repeat, and none the server did not read counts as written. Over UDP a batch counts as written once every
/// datagram was handed to the network, which confirms nothing.
pub struct SyslogWriter {
    /// The server as configured, for messages.
    address: String,
    /// How batches travel; the UDP socket lives as long as the writer.
    transport: Transport,
    /// The fixed part of every message's header.
    header: Header,
    connect_timeout: Duration,
    write_timeout: Duration,
    /// One message, encoded; kept to reuse its capacity.
    message: Vec<u8>,
    /// A whole framed batch (TCP and TLS); kept to reuse its capacity.
    batch: Vec<u8>,
}

enum Transport {
    Udp(UdpSocket),
    Tcp,
    Tls {
        connector: TlsConnector,
        name: ServerName<'static>,
    },
}

impl std::fmt::Debug for SyslogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let protocol = match self.transport {
            Transport::Udp(_) => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls { .. } => "tls",
        };
        f.debug_struct("SyslogWriter")
            .field("address", &self.address)
            .field("protocol", &protocol)
            .finish_non_exhaustive()
    }
}

/// An open TCP or TLS connection to the server.
trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// An I/O error saying what happened, for the sources of [`WriteError`]s.
fn other(kind: io::ErrorKind, message: String) -> io::Error {
    io::Error::new(kind, message)
}

async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
        Err(other(
            io::ErrorKind::TimedOut,
            format!("{what} took longer than {limit:?}"),
        ))
    })
}

impl SyslogWriter {
    /// Checks the options, then opens the writer. Over TCP and TLS it opens and closes one
    /// empty session, so that a wrong address, nothing listening, or a certificate that does
    /// not verify fails here with a terminal error. Over UDP it only resolves the address.
    pub async fn connect(options: SyslogOptions) -> Result<Self, WriteError> {
        options.check().map_err(|(key, message)| {
            WriteError::terminal(format!("syslog option {key}"), message)
        })?;
        let hostname = options.hostname.clone().unwrap_or_else(local_hostname);
        let header = Header::new(
            options.facility,
            &hostname,
            &options.app_name,
            std::process::id(),
        );
        let transport = match options.protocol {
            Protocol::Udp => Transport::Udp(udp_socket(&options).await?),
            Protocol::Tcp => Transport::Tcp,
            Protocol::Tls => tls_transport(&options)?,
        };
        let writer = Self {
            address: options.address.clone(),
            transport,
            header,
            connect_timeout: options.connect_timeout,
            write_timeout: options.write_timeout,
            message: Vec::new(),
            batch: Vec::new(),
        };
        if !matches!(writer.transport, Transport::Udp(_)) {
            // An empty batch: connect (and handshake), then the close exchange.
            writer
                .send_confirmed(&[])
                .await
                .map_err(|e| WriteError::terminal(e.context(&writer), e.source))?;
        }
        tracing::info!(
            address = %writer.address,
            protocol = writer.protocol(),
            hostname = %hostname,
            "syslog writer ready"
        );
        Ok(writer)
    }

    fn protocol(&self) -> &'static str {
        match self.transport {
            Transport::Udp(_) => Protocol::Udp.as_str(),
            Transport::Tcp => Protocol::Tcp.as_str(),
            Transport::Tls { .. } => Protocol::Tls.as_str(),
        }
    }

    /// Connects over TCP, and TLS when configured, within the connect timeout.
    async fn open(&self) -> Result<Box<dyn Conn>, StepError> {
        let tcp = within(
            self.connect_timeout,
            "connecting",
            TcpStream::connect(self.address.as_str()),
        )
        .await
        .map_err(|e| StepError::new(Step::Connect, e))?;
        // Messages are written whole in one go; no reason to hold back a partial segment.
        let _ = tcp.set_nodelay(true);
        match &self.transport {
            Transport::Tls { connector, name } => {
                let tls = within(
                    self.connect_timeout,
                    "the TLS handshake",
                    connector.connect(name.clone(), tcp),
                )
                .await
                .map_err(|e| StepError::new(Step::Handshake, e))?;
                Ok(Box::new(tls))
            }
            Transport::Tcp | Transport::Udp(_) => Ok(Box::new(tcp)),
        }
    }

    /// Sends `bytes` on a new connection and waits for the server to confirm it by closing
    /// after our end of stream.
    async fn send_confirmed(&self, bytes: &[u8]) -> Result<(), StepError> {
        let mut conn = self.open().await?;
        // One deadline for sending and for the confirming close together.
        let deadline = tokio::time::Instant::now() + self.write_timeout;
        let sent = tokio::time::timeout_at(deadline, async {
            // A server that closes a connection as soon as it accepts it (one at its
            // session limit) would drop whatever we send: find out before sending.
            if peer_closed(&mut conn).await? {
                return Err(closed_early());
            }
            conn.write_all(bytes).await?;
            conn.flush().await?;
            if peer_closed(&mut conn).await? {
                return Err(closed_early());
            }
            Ok(())
        })
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(StepError::new(Step::Send, e)),
            Err(_) => {
                return Err(StepError::new(
                    Step::Send,
                    self.timed_out("sending the batch"),
                ))
            }
        }
        let confirmed = tokio::time::timeout_at(deadline, async {
            conn.shutdown().await?;
            drain_to_end(&mut conn).await
        })
        .await;
        match confirmed {
            Ok(result) => result.map_err(|e| StepError::new(Step::Confirm, e)),
            Err(_) => Err(StepError::new(
                Step::Confirm,
                self.timed_out("sending the batch and waiting for the server's close"),
            )),
        }
    }

    fn timed_out(&self, what: &str) -> io::Error {
        other(
            io::ErrorKind::TimedOut,
            format!(
                "{what} took longer than write_timeout ({:?})",
                self.write_timeout
            ),
        )
    }

    async fn write_stream(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        let time = frame::now();
        self.batch.clear();
        for event in batch {
            self.message.clear();
            frame::write_message(&self.header, time, event, &mut self.message);
            frame::write_octet_counted(&self.message, &mut self.batch);
        }
        self.send_confirmed(&self.batch)
            .await
            .map_err(|e| WriteError::retriable(e.context(self), e.source))
    }

    async fn write_udp(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        let Transport::Udp(socket) = &self.transport else {
            return Ok(());
        };
        let time = frame::now();
        let mut rejected = Vec::new();
        for (index, event) in batch.iter().enumerate() {
            self.message.clear();
            frame::write_message(&self.header, time, event, &mut self.message);
            if self.message.len() > UDP_MAX_MESSAGE {
                rejected.push(Rejection::new(
                    index,
                    format!(
                        "a {}-byte message does not fit in one UDP datagram (at most \
                         {UDP_MAX_MESSAGE})",
                        self.message.len()
                    ),
                ));
                continue;
            }
            within(
                self.write_timeout,
                "sending a datagram",
                socket.send(&self.message),
            )
            .await
            .map_err(|e| {
                WriteError::retriable(
                    format!("sending a syslog datagram to {} failed", self.address),
                    e,
                )
            })?;
        }
        if rejected.is_empty() {
            Ok(())
        } else {
            Err(WriteError::Rejected(rejected))
        }
    }
}

#[async_trait]
impl Writer for SyslogWriter {
    fn name(&self) -> &str {
        "syslog"
    }

    async fn write(&mut self, batch: &[Event]) -> Result<(), WriteError> {
        if batch.is_empty() {
            return Ok(());
        }
        match self.transport {
            Transport::Udp(_) => self.write_udp(batch).await,
            Transport::Tcp | Transport::Tls { .. } => self.write_stream(batch).await,
        }
    }
}

/// Where sending a batch failed.
#[derive(Clone, Copy, Debug)]
enum Step {
    Connect,
    Handshake,
    Send,
    Confirm,
}

/// A failed step and its cause.
struct StepError {
    step: Step,
    source: io::Error,
}

impl StepError {
    fn new(step: Step, source: io::Error) -> Self {
        Self { step, source }
    }

    /// What was being done, for the error's context.
    fn context(&self, w: &SyslogWriter) -> String {
        let (address, protocol) = (&w.address, w.protocol());
        match self.step {
            Step::Connect => {
                format!("connecting to the syslog server at {address} ({protocol}) failed")
            }
            Step::Handshake => format!(
                "the TLS handshake with the syslog server at {address} failed (its certificate \
                 and name are verified against ca_file, or the built-in roots without it)"
            ),
            Step::Send => {
                format!("sending a batch to the syslog server at {address} ({protocol}) failed")
            }
            Step::Confirm => format!(
                "the syslog server at {address} ({protocol}) did not confirm the batch by \
                 closing after it"
            ),
        }
    }
}

fn closed_early() -> io::Error {
    other(
        io::ErrorKind::ConnectionAborted,
        "the server closed the connection before reading the end of the batch".into(),
    )
}

/// Whether the server has closed its side (or reset the connection), without waiting: a
/// syslog server never sends, so a readable connection means end of stream or an error.
/// Anything it did send is read and ignored.
async fn peer_closed(conn: &mut Box<dyn Conn>) -> io::Result<bool> {
    let mut scratch = [0u8; 512];
    std::future::poll_fn(|cx| {
        let mut buf = ReadBuf::new(&mut scratch);
        match Pin::new(&mut **conn).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Ready(Ok(false)),
            Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().is_empty())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    })
    .await
}

/// Reads (and ignores) until the server closes. Over TLS a server may close the TCP
/// connection without a close_notify of its own; after our end of stream that is still its
/// answer to it.
async fn drain_to_end(conn: &mut Box<dyn Conn>) -> io::Result<()> {
    let mut scratch = [0u8; 512];
    loop {
        match conn.read(&mut scratch).await {
            Ok(0) => return Ok(()),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// A UDP socket connected to the server's first address, so that only its datagrams come
/// back and errors reported for earlier datagrams surface on later sends.
async fn udp_socket(options: &SyslogOptions) -> Result<UdpSocket, WriteError> {
    let context = || format!("resolving the syslog server {} failed", options.address);
    let addr: SocketAddr = tokio::net::lookup_host(options.address.as_str())
        .await
        .map_err(|e| WriteError::terminal(context(), e))?
        .next()
        .ok_or_else(|| WriteError::terminal(context(), "the name has no address"))?;
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| WriteError::terminal("opening a UDP socket failed", e))?;
    socket
        .connect(addr)
        .await
        .map_err(|e| WriteError::terminal(format!("addressing {addr} over UDP failed"), e))?;
    Ok(socket)
}

/// The TLS client: roots from `ca_file` or the built-in Mozilla roots, the server name from
/// `server_name` or the host of `address`, verification always on.
fn tls_transport(options: &SyslogOptions) -> Result<Transport, WriteError> {
    let mut roots = RootCertStore::empty();
    match &options.ca_file {
        Some(path) => {
            let shown = path.display();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| WriteError::terminal(format!("reading ca_file {shown} failed"), e))?;
            if certs.is_empty() {
                return Err(WriteError::terminal(
                    format!("ca_file {shown} is unusable"),
                    "it holds no PEM certificate",
                ));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    WriteError::terminal(format!("a certificate in ca_file {shown} is unusable"), e)
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WriteError::terminal("setting up TLS failed", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = match &options.server_name {
        Some(name) => name.as_str(),
        None => options.host_port().map(|(h, _)| h).unwrap_or_default(),
    };
    let name = ServerName::try_from(host.to_owned()).map_err(|e| {
        WriteError::terminal(
            format!("{host:?} cannot be checked against a certificate"),
            e,
        )
    })?;
    Ok(Transport::Tls {
        connector: TlsConnector::from(Arc::new(config)),
        name,
    })
}
