//! A network namespace of the test's own with a DNS server of the test's
//! own on 127.0.0.53 (UDP and TCP port 53), and ways to run real resolvers
//! inside it: a command (Python's glibc `getaddrinfo`, Node's c-ares, a
//! static musl program) sees a private `/etc/resolv.conf` and
//! `/etc/nsswitch.conf` pointing at that server, and Rust code can run in a
//! thread that joined the namespace.
//!
//! Everything is torn down when the [`TestNet`] is dropped: the server
//! threads stop and the namespace goes away with its last socket.

use std::{
    cell::RefCell,
    collections::HashMap,
    ffi::CString,
    fs::{self, File},
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream, UdpSocket},
    os::{fd::AsRawFd, unix::process::CommandExt as _},
    path::PathBuf,
    process::{Command, Output, Stdio},
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc::channel,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use connect_trace::{
    decode::sockaddr::Address,
    delivery::Ledger,
    dns::{CacheConfig, DnsCapture, NameCache},
    export::{Sink, SinkError},
    kernel::{
        Tracer, TracerConfig,
        dns::{DnsKernelStats, DnsSettings},
    },
    pipeline::{Pipeline, PipelineConfig, names::DestinationNames, reader::EventReader},
    report::AttemptReport,
};
use serde_json::Value;

use crate::common::daemon::Daemon;

/// Where the test's DNS server listens, inside the namespace.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 53);

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;

pub use crate::common::require_root;

/// A DNS name in wire form (length-prefixed labels, ending with the root).
pub fn wire_name(labels: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for label in labels {
        out.push(u8::try_from(label.len()).unwrap());
        out.extend_from_slice(label);
    }
    out.push(0);
    out
}

/// `name` (dotted text) in wire form.
pub fn wire(name: &str) -> Vec<u8> {
    let labels: Vec<&[u8]> = name.split('.').map(str::as_bytes).collect();
    wire_name(&labels)
}

/// A query for `name` (wire form) and `qtype`.
pub fn query(id: u16, name: &[u8], qtype: u16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(name);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out
}

/// Record data the test server can answer with.
#[derive(Clone, Debug)]
enum Data {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(Vec<u8>),
}

impl Data {
    fn rtype(&self) -> u16 {
        match self {
            Data::A(_) => TYPE_A,
            Data::Aaaa(_) => TYPE_AAAA,
            Data::Cname(_) => TYPE_CNAME,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            Data::A(addr) => addr.octets().to_vec(),
            Data::Aaaa(addr) => addr.octets().to_vec(),
            Data::Cname(target) => target.clone(),
        }
    }
}

/// What the test server knows. Names are matched without ASCII case.
#[derive(Default, Clone)]
pub struct Zone {
    records: HashMap<Vec<u8>, Vec<(Data, u32)>>,
    raw: HashMap<Vec<u8>, Vec<Vec<u8>>>,
}

impl Zone {
    /// An empty zone: every name is NXDOMAIN.
    pub fn new() -> Self {
        Self::default()
    }

    fn add(mut self, name: &str, data: Data, ttl: u32) -> Self {
        self.records
            .entry(wire(name).to_ascii_lowercase())
            .or_default()
            .push((data, ttl));
        self
    }

    /// `name A addr`.
    pub fn a(self, name: &str, addr: &str, ttl: u32) -> Self {
        self.add(name, Data::A(addr.parse().unwrap()), ttl)
    }

    /// `name AAAA addr`.
    pub fn aaaa(self, name: &str, addr: &str, ttl: u32) -> Self {
        self.add(name, Data::Aaaa(addr.parse().unwrap()), ttl)
    }

    /// `name CNAME target`.
    pub fn cname(self, name: &str, target: &str, ttl: u32) -> Self {
        self.add(name, Data::Cname(wire(target)), ttl)
    }

    /// Any query for `name` (wire form) gets these packets instead of an
    /// answer, each with the query's id written into its first two bytes.
    pub fn raw(mut self, name: &[u8], responses: Vec<Vec<u8>>) -> Self {
        self.raw.insert(name.to_ascii_lowercase(), responses);
        self
    }

    /// The responses to one query.
    fn respond(&self, query: &[u8]) -> Vec<Vec<u8>> {
        let Some((qname, qtype, question_end)) = read_question(query) else {
            return Vec::new();
        };
        if let Some(blobs) = self.raw.get(&qname.to_ascii_lowercase()) {
            return blobs
                .iter()
                .map(|blob| {
                    let mut blob = blob.clone();
                    if blob.len() >= 2 {
                        blob[..2].copy_from_slice(&query[..2]);
                    }
                    blob
                })
                .collect();
        }
        // Follow CNAMEs, then answer with the records of the type asked.
        let mut answers: Vec<(Vec<u8>, Data, u32)> = Vec::new();
        let mut current = qname.clone();
        let mut known = false;
        for _ in 0..8 {
            let Some(records) = self.records.get(&current.to_ascii_lowercase()) else {
                break;
            };
            known = true;
            if let Some((Data::Cname(target), ttl)) = records
                .iter()
                .find(|(data, _)| matches!(data, Data::Cname(_)))
            {
                answers.push((current.clone(), Data::Cname(target.clone()), *ttl));
                current = target.clone();
                continue;
            }
            for (data, ttl) in records {
                if data.rtype() == qtype {
                    answers.push((current.clone(), data.clone(), *ttl));
                }
            }
            break;
        }
        let mut out = Vec::new();
        out.extend_from_slice(&query[..2]);
        // QR, RD, RA; NXDOMAIN for names the zone does not know.
        out.extend_from_slice(&[0x81, if known { 0x80 } else { 0x83 }]);
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&u16::try_from(answers.len()).unwrap().to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&query[12..question_end]);
        for (owner, data, ttl) in answers {
            if owner == qname {
                // Compressed, as real servers write it: a pointer to the
                // question's name.
                out.extend_from_slice(&[0xc0, 12]);
            } else {
                out.extend_from_slice(&owner);
            }
            out.extend_from_slice(&data.rtype().to_be_bytes());
            out.extend_from_slice(&1u16.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            let rdata = data.bytes();
            out.extend_from_slice(&u16::try_from(rdata.len()).unwrap().to_be_bytes());
            out.extend_from_slice(&rdata);
        }
        vec![out]
    }
}

/// The question of a query: its name (wire form, uncompressed), type, and
/// where the question ends.
fn read_question(query: &[u8]) -> Option<(Vec<u8>, u16, usize)> {
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        if len == 0 || len >= 0x40 {
            break;
        }
        at += 1 + len;
    }
    if query.get(at) != Some(&0) {
        return None;
    }
    let qname = query.get(12..=at)?.to_vec();
    let qtype = u16::from_be_bytes([*query.get(at + 1)?, *query.get(at + 2)?]);
    Some((qname, qtype, at + 5))
}

/// A network namespace with loopback up, some local addresses, and the
/// test's DNS server on [`SERVER`].
pub struct TestNet {
    ns: File,
    /// The namespace's inode number (`net->ns.inum`).
    pub inode: u32,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    dir: PathBuf,
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

impl TestNet {
    /// A namespace with `addresses` on its loopback and `zone` served.
    pub fn start(zone: Zone, addresses: &[&str]) -> Self {
        require_root();
        let addresses: Vec<String> = addresses.iter().map(|a| (*a).to_owned()).collect();
        let (sender, receiver) = channel();
        thread::Builder::new()
            .name("dns-netns".into())
            .spawn(move || {
                // SAFETY: no memory involved; moves only this thread.
                let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
                run_ok(Command::new("ip").args(["link", "set", "lo", "up"]));
                for addr in &addresses {
                    run_ok(Command::new("ip").args(["addr", "add", addr, "dev", "lo"]));
                }
                let ns = File::open("/proc/thread-self/ns/net").unwrap();
                let inode = connect_trace::dns::netns::current_thread().unwrap();
                let udp = UdpSocket::bind((SERVER, 53)).unwrap();
                let tcp = TcpListener::bind((SERVER, 53)).unwrap();
                sender.send((ns, inode, udp, tcp)).unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
        let (ns, inode, udp, tcp) = receiver.recv().unwrap();
        assert_ne!(
            inode,
            connect_trace::dns::netns::current_thread().unwrap(),
            "the test namespace must not be the host's"
        );

        let stop = Arc::new(AtomicBool::new(false));
        let zone = Arc::new(zone);
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        tcp.set_nonblocking(true).unwrap();
        let udp_thread = {
            let (stop, zone) = (stop.clone(), zone.clone());
            thread::spawn(move || serve_udp(&udp, &zone, &stop))
        };
        let tcp_thread = {
            let (stop, zone) = (stop.clone(), zone.clone());
            thread::spawn(move || serve_tcp(&tcp, &zone, &stop))
        };

        let dir = std::env::temp_dir().join(format!(
            "connect-trace-dns-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {SERVER}\noptions attempts:2 timeout:2\n"),
        )
        .unwrap();
        fs::write(
            dir.join("resolv-tcp.conf"),
            format!("nameserver {SERVER}\noptions use-vc attempts:2 timeout:2\n"),
        )
        .unwrap();
        fs::write(dir.join("nsswitch.conf"), "hosts: files dns\n").unwrap();
        Self {
            ns,
            inode,
            stop,
            threads: vec![udp_thread, tcp_thread],
            dir,
        }
    }

    /// A command that runs in the namespace with a private mount namespace
    /// in which `/etc/resolv.conf` names the test server (asking for TCP
    /// when `tcp`) and `/etc/nsswitch.conf` says `hosts: files dns`.
    pub fn command(&self, program: &str, tcp: bool) -> Command {
        let ns_fd = self.ns.as_raw_fd();
        let path = |name: &str| CString::new(self.dir.join(name).to_str().unwrap()).unwrap();
        let resolv = path(if tcp {
            "resolv-tcp.conf"
        } else {
            "resolv.conf"
        });
        let nsswitch = path("nsswitch.conf");
        let mut command = Command::new(program);
        // SAFETY: only async-signal-safe system calls run between fork and
        // exec; the strings were allocated before the fork.
        unsafe {
            command.pre_exec(move || {
                let check = |rc: libc::c_int| {
                    if rc == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                };
                check(libc::setns(ns_fd, libc::CLONE_NEWNET))?;
                check(libc::unshare(libc::CLONE_NEWNS))?;
                check(libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                check(libc::mount(
                    resolv.as_ptr(),
                    c"/etc/resolv.conf".as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ))?;
                check(libc::mount(
                    nsswitch.as_ptr(),
                    c"/etc/nsswitch.conf".as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ))
            });
        }
        command
    }

    /// Runs `body` on a thread inside the namespace.
    pub fn run_in<T: Send>(&self, body: impl FnOnce() -> T + Send) -> T {
        let ns_fd = self.ns.as_raw_fd();
        thread::scope(|scope| {
            scope
                .spawn(move || {
                    // SAFETY: moves only this thread, which ends with the scope.
                    let rc = unsafe { libc::setns(ns_fd, libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                    body()
                })
                .join()
                .unwrap()
        })
    }

    /// Sends a query for `name` (wire form) from a fresh UDP socket in the
    /// namespace and returns the first response (waiting up to 5 s).
    pub fn ask_udp(&self, name: &[u8], qtype: u16) -> Vec<u8> {
        let query = query(0x4242, name, qtype);
        self.run_in(move || {
            let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            socket.connect((SERVER, 53)).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            socket.send(&query).unwrap();
            let mut buf = [0u8; 4096];
            let len = socket
                .recv(&mut buf)
                .expect("a response from the test server");
            buf[..len].to_vec()
        })
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn serve_udp(socket: &UdpSocket, zone: &Zone, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok((len, peer)) = socket.recv_from(&mut buf) else {
            continue;
        };
        for response in zone.respond(&buf[..len]) {
            let _ = socket.send_to(&response, peer);
        }
    }
}

fn serve_tcp(listener: &TcpListener, zone: &Zone, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => serve_connection(stream, zone),
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Answers the queries of one connection. Each response goes out in two
/// segments (the length prefix and a few bytes, then the rest), so the
/// capture has to join them.
fn serve_connection(mut stream: TcpStream, zone: &Zone) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    loop {
        let mut prefix = [0u8; 2];
        if stream.read_exact(&mut prefix).is_err() {
            return;
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        if stream.read_exact(&mut query).is_err() {
            return;
        }
        for response in zone.respond(&query) {
            let mut framed = u16::try_from(response.len())
                .unwrap()
                .to_be_bytes()
                .to_vec();
            framed.extend_from_slice(&response);
            let split = framed.len().min(7);
            if stream.write_all(&framed[..split]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
            if stream.write_all(&framed[split..]).is_err() {
                return;
            }
        }
    }
}

/// Runs a set-up command and fails the test with its stderr if it fails.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// What a client printed: the address it connected to and the kernel
/// monotonic time (ns) just before its connect() call.
pub fn connected(output: &Output) -> (IpAddr, u64) {
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|line| line.starts_with("connect "))
        .unwrap_or_else(|| panic!("client printed no connect line: {text}"));
    let mut fields = line.split_whitespace().skip(1);
    let addr = fields.next().unwrap().parse().unwrap();
    let at = fields.next().unwrap().parse().unwrap();
    (addr, at)
}

/// A Python client: glibc's `getaddrinfo(name, port, family)`, an optional
/// pause, then connect() to the first address. It prints when it had the
/// answer (`resolved NS`) and what it connected to when (`connect ADDR
/// NS`), in kernel monotonic time.
pub const PYTHON_CLIENT: &str = r#"
import socket, sys, time
name, family, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
fam = socket.AF_INET6 if family == "6" else socket.AF_INET
addr = socket.getaddrinfo(name, 9, fam, socket.SOCK_STREAM)[0][4]
print("resolved", time.monotonic_ns(), flush=True)
time.sleep(pause)
s = socket.socket(fam, socket.SOCK_STREAM)
at = time.monotonic_ns()
try:
    s.connect(addr)
except OSError:
    pass
print("connect", addr[0], at, flush=True)
"#;

/// When the client had its answer (kernel monotonic ns), from its
/// `resolved NS` line.
pub fn resolved_at(output: &Output) -> u64 {
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| line.strip_prefix("resolved "))
        .unwrap_or_else(|| panic!("client printed no resolved line: {text}"))
        .trim()
        .parse()
        .unwrap()
}

/// A Node client: `dns.resolve4` through c-ares straight to the test
/// server (no glibc), then `net.connect`.
pub const NODE_CLIENT: &str = r#"
const dns = require("dns");
const net = require("net");
// With `node -e`, the arguments start at argv[1].
const [name, server] = process.argv.slice(1);
const resolver = new dns.Resolver({ timeout: 2000, tries: 2 });
resolver.setServers([server]);
resolver.resolve4(name, (err, addrs) => {
  if (err) { console.error(String(err)); process.exit(2); }
  const at = process.hrtime.bigint();
  const s = net.connect({ host: addrs[0], port: 9 });
  const done = () => { console.log(`connect ${addrs[0]} ${at}`); s.destroy(); process.exit(0); };
  s.on("error", done);
  s.on("connect", done);
});
"#;

/// Runs the Python client in `net` and returns what it printed.
pub fn python_client(net: &TestNet, name: &str, family: &str, pause_s: f64, tcp: bool) -> Output {
    run_ok(net.command("/usr/bin/python3", tcp).args([
        "-c",
        PYTHON_CLIENT,
        name,
        family,
        &pause_s.to_string(),
    ]))
}

/// Runs the Node client in `net` and returns what it printed.
pub fn node_client(net: &TestNet, name: &str) -> Output {
    run_ok(
        net.command("node", false)
            .args(["-e", NODE_CLIENT, "--", name, &SERVER.to_string()]),
    )
}

/// A Java client that resolves with the JDK's own DNS client (JNDI's DNS
/// provider, which speaks DNS itself: no glibc), then connects with a
/// `Socket`. `System.nanoTime` is the kernel's monotonic clock on Linux.
pub const JAVA_CLIENT: &str = r#"
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.util.Hashtable;
import javax.naming.directory.Attributes;
import javax.naming.directory.InitialDirContext;

public class Client {
    public static void main(String[] args) throws Exception {
        Hashtable<String, String> env = new Hashtable<>();
        env.put("java.naming.factory.initial", "com.sun.jndi.dns.DnsContextFactory");
        env.put("java.naming.provider.url", "dns://" + args[1]);
        env.put("com.sun.jndi.dns.timeout.initial", "2000");
        env.put("com.sun.jndi.dns.timeout.retries", "2");
        Attributes found = new InitialDirContext(env).getAttributes(args[0], new String[] {"A"});
        String addr = (String) found.get("A").get();
        long at = System.nanoTime();
        // A literal address: no lookup.
        try (Socket socket = new Socket()) {
            socket.connect(new InetSocketAddress(InetAddress.getByName(addr), 9), 2000);
        } catch (java.io.IOException refused) {
        }
        System.out.println("connect " + addr + " " + at);
    }
}
"#;

/// Runs [`JAVA_CLIENT`] (as a single source file, which `java` compiles in
/// memory) in `net` and returns what it printed.
pub fn java_client(net: &TestNet, name: &str) -> Output {
    let dir = std::env::temp_dir().join(format!(
        "connect-trace-dns-java-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).unwrap();
    let source = dir.join("Client.java");
    fs::write(&source, JAVA_CLIENT).unwrap();
    let output = run_ok(
        net.command("java", false)
            .arg(&source)
            .args([name, &SERVER.to_string()]),
    );
    let _ = fs::remove_dir_all(&dir);
    output
}

/// The DNS capture as the daemon loads it (with the connect() programs,
/// filtered to this process), and a cache it fills: for measurements of
/// the capture program alone.
pub struct Capture {
    /// Keeps the programs attached.
    _tracer: Tracer,
    pub capture: DnsCapture,
    pub cache: NameCache,
    pub kernel: DnsKernelStats,
    pub program_id: u32,
}

impl Capture {
    /// Loads and attaches the programs with the DNS capture.
    pub fn start() -> Self {
        require_root();
        let mut tracer = Tracer::load(&TracerConfig {
            pid: Some(std::process::id()),
            dns: Some(DnsSettings::default()),
            ..TracerConfig::default()
        })
        .expect("loading the tracer");
        let ring = tracer
            .take_dns()
            .unwrap_or_else(|| panic!("no DNS capture: {:?}", tracer.dns_problem()));
        Self {
            _tracer: tracer,
            capture: DnsCapture::new(ring.ring, ring.multicast),
            cache: NameCache::new(CacheConfig::default()),
            kernel: ring.stats,
            program_id: ring.program_id,
        }
    }

    /// Takes what the capture has.
    pub fn drain(&mut self) {
        self.capture.drain(&mut self.cache);
    }
}

/// Keeps every report the pipeline hands its sinks.
struct Keep(Rc<RefCell<Vec<AttemptReport>>>);

impl Sink for Keep {
    fn attempt(&mut self, report: &AttemptReport) -> Result<(), SinkError> {
        self.0.borrow_mut().push(report.clone());
        Ok(())
    }
}

/// The daemon's own pipeline, tracing every process, with the DNS capture
/// and a name cache configured by the test (the daemon's options do not
/// reach every bound).
pub struct NamingPipeline {
    runtime: tokio::runtime::Runtime,
    _tracer: Tracer,
    reader: EventReader,
    pipeline: Pipeline,
    reports: Rc<RefCell<Vec<AttemptReport>>>,
}

impl NamingPipeline {
    /// Loads the programs, the DNS capture among them, and names
    /// destinations with a cache bounded by `cache`.
    pub fn start(cache: CacheConfig) -> Self {
        require_root();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut tracer = Tracer::load(&TracerConfig {
            dns: Some(DnsSettings::default()),
            ..TracerConfig::default()
        })
        .expect("loading the tracer");
        let ring = tracer.take_events().unwrap();
        let reader = runtime
            .block_on(async { EventReader::new(ring, Duration::from_millis(5)) })
            .unwrap();
        let reports = Rc::new(RefCell::new(Vec::new()));
        let mut pipeline = Pipeline::new(
            PipelineConfig::default(),
            tracer.stats(),
            Arc::new(Ledger::default()),
            vec![Box::new(Keep(Rc::clone(&reports)))],
            None,
        );
        let names = DestinationNames::new(tracer.take_dns(), cache);
        assert!(names.capturing(), "{:?}", tracer.dns_problem());
        pipeline.name_destinations(names);
        Self {
            runtime,
            _tracer: tracer,
            reader,
            pipeline,
            reports,
        }
    }

    /// The report of the call from namespace `netns` to `addr`, waiting up
    /// to 5 s for it.
    pub fn report_to(&mut self, netns: u32, addr: IpAddr) -> AttemptReport {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            self.pipeline.drain(&mut self.reader, |_| {}).unwrap();
            let found = self
                .reports
                .borrow()
                .iter()
                .find(|report| {
                    let attempt = &report.resolved.attempt;
                    let to = match attempt.destination().address {
                        Address::V4(ip) => Some(IpAddr::V4(ip)),
                        Address::V6(ip) => Some(IpAddr::V6(ip)),
                        _ => None,
                    };
                    attempt.netns() == Some(netns) && to == Some(addr)
                })
                .cloned();
            if let Some(report) = found {
                return report;
            }
            assert!(Instant::now() < deadline, "no record to {addr} in {netns}");
            let reader = &mut self.reader;
            let _ = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_millis(20), reader.wait()).await
            });
        }
    }
}

/// A `connect-trace run` tracing every process, without workload names,
/// summaries or metrics unless `extra` asks.
pub fn daemon(extra: &[&str]) -> Daemon {
    let mut args = vec!["--no-workloads", "--interval", "0"];
    args.extend_from_slice(extra);
    Daemon::start(&args)
}

/// The daemon's record of the call from namespace `netns` to `addr`
/// (text, as the record writes it), waiting for it.
pub fn record_to(daemon: &Daemon, netns: u32, addr: &str) -> Value {
    let stdout = daemon.stdout.as_ref().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = stdout
            .recv_timeout(left)
            .unwrap_or_else(|error| panic!("no record to {addr} in {netns}: {error}"));
        let record: Value = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("invalid JSON line {line:?}: {error}"));
        if record["type"] == "connect" && record["netns"] == netns && record["addr"] == addr {
            return record;
        }
    }
}

/// The `server_name` of the daemon's record of the call from `netns` to
/// `addr`.
pub fn server_name_to(daemon: &Daemon, netns: u32, addr: &str) -> Value {
    record_to(daemon, netns, addr)["server_name"].clone()
}

/// A C client built against musl (static, so no glibc is involved):
/// `getaddrinfo(name)` for IPv4, then connect().
pub const MUSL_CLIENT: &str = r#"
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

int main(int argc, char **argv) {
    struct addrinfo hints = {0}, *res;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (argc < 2) return 2;
    int rc = getaddrinfo(argv[1], "9", &hints, &res);
    if (rc != 0) { fprintf(stderr, "getaddrinfo: %s\n", gai_strerror(rc)); return 2; }
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, text, sizeof text);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    connect(fd, res->ai_addr, res->ai_addrlen);
    printf("connect %s %llu\n", text,
           (unsigned long long)now.tv_sec * 1000000000ULL + (unsigned long long)now.tv_nsec);
    return 0;
}
"#;

/// Builds [`MUSL_CLIENT`] with `musl-gcc` (Debian's musl-tools) into `dir`
/// and returns the program's path.
pub fn build_musl_client(dir: &std::path::Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let source = dir.join("musl-client.c");
    let program = dir.join("musl-client");
    fs::write(&source, MUSL_CLIENT).unwrap();
    run_ok(
        Command::new("musl-gcc")
            .args(["-static", "-O2", "-o"])
            .arg(&program)
            .arg(&source),
    );
    program
}

/// A Go client: the pure-Go resolver (`PreferGo`, and `GODEBUG=netdns=go`
/// when run), which reads `/etc/resolv.conf` and speaks DNS itself, then
/// `net.DialTimeout`.
pub const GO_CLIENT: &str = r#"
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"
)

func monotonicNs() uint64 {
	var ts syscall.Timespec
	// CLOCK_MONOTONIC is 1.
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1, uintptr(unsafe.Pointer(&ts)), 0)
	return uint64(ts.Sec)*1000000000 + uint64(ts.Nsec)
}

func main() {
	resolver := &net.Resolver{PreferGo: true}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := resolver.LookupIP(ctx, "ip4", os.Args[1])
	if err != nil || len(addrs) == 0 {
		fmt.Fprintln(os.Stderr, "lookup:", err)
		os.Exit(2)
	}
	addr := addrs[0].String()
	at := monotonicNs()
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort(addr, "9"), 2*time.Second); err == nil {
		conn.Close()
	}
	fmt.Printf("connect %s %d\n", addr, at)
}
"#;

/// Builds [`GO_CLIENT`] with Debian's `golang-go` into `dir` (its build
/// cache there too: nothing is fetched) and returns the program's path.
pub fn build_go_client(dir: &std::path::Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let source = dir.join("client.go");
    let program = dir.join("go-client");
    fs::write(&source, GO_CLIENT).unwrap();
    run_ok(
        Command::new("go")
            .args(["build", "-o"])
            .arg(&program)
            .arg(&source)
            .env("GOCACHE", dir.join("cache"))
            .env("GOPATH", dir.join("gopath"))
            .env("GOPROXY", "off")
            .env("GOFLAGS", "")
            .env("GOTOOLCHAIN", "local"),
    );
    program
}
